"""Provider endpoints over the API: built-in defaults, validated URLs, a credential that goes in and never out."""

from __future__ import annotations

import pytest
from django.test import override_settings

from proxy.models import ProviderEndpoint

from ..support import ApiClient

pytestmark = pytest.mark.django_db

SECRET = "sk-upstream-do-not-echo-0123456789"


def test_a_builtin_slug_defaults_its_base_url_and_wire_format(acme_api: ApiClient) -> None:
    response = acme_api.post("providers", {"slug": "anthropic", "credential": SECRET})
    assert response.status_code == 201
    body = response.json()
    assert body["base_url"] == "https://api.anthropic.com"
    assert body["wire_format"] == "anthropic" and body["pricing_provider"] == "anthropic"
    assert body["has_credential"] is True
    assert SECRET not in response.content.decode() and "credential" not in body
    assert ProviderEndpoint.objects.get(pk=body["id"]).get_credential() == SECRET


@pytest.mark.parametrize(("payload", "expected"), [
    ({"slug": "gemini-native"}, ("gemini", "https://generativelanguage.googleapis.com", "google")),
    ({"slug": "gemini"}, ("openai", "https://generativelanguage.googleapis.com/v1beta/openai", "google")),
    ({"slug": "vertex-eu", "wire_format": "gemini", "base_url": "https://gemini.example.eu"},
     ("gemini", "https://gemini.example.eu", "")),
])
def test_gemini_native_is_a_builtin_kind_and_a_wire_format(acme_api: ApiClient, payload, expected) -> None:
    response = acme_api.post("providers", {**payload, "credential": SECRET})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["wire_format"], body["base_url"], body["pricing_provider"]) == expected


def test_a_custom_endpoint(acme_api: ApiClient) -> None:
    response = acme_api.post(
        "providers", {"slug": "vllm-internal", "wire_format": "openai", "base_url": "http://10.0.0.5:8000/v1/"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["base_url"] == "http://10.0.0.5:8000/v1"
    assert body["has_credential"] is False and body["pricing_provider"] == ""


def test_a_custom_endpoint_needs_a_wire_format_and_a_base_url(acme_api: ApiClient) -> None:
    response = acme_api.post("providers", {"slug": "my-llm"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "wire_format" in detail and "base_url" in detail


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "Not A Slug"}, "slug"),
        ({"slug": "my-llm", "wire_format": "grpc", "base_url": "https://llm.example.com"}, "wire_format"),
        ({"slug": "my-llm", "wire_format": "openai", "base_url": "ftp://llm.example.com"}, "base_url"),
        ({"slug": "my-llm", "wire_format": "openai", "base_url": "not a url"}, "base_url"),
    ],
)
def test_invalid_endpoints_get_422_naming_the_field(acme_api: ApiClient, body: dict, field: str) -> None:
    response = acme_api.post("providers", body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


@override_settings(TOKONOMICS_ALLOW_PRIVATE_URLS=False)
def test_private_urls_are_refused_when_turned_off(acme_api: ApiClient) -> None:
    response = acme_api.post("providers", {"slug": "vllm", "wire_format": "openai", "base_url": "http://127.0.0.1:9/v1"})
    assert response.status_code == 422
    assert "private" in response.json()["detail"] and "base_url" in response.json()["detail"]


def test_list_get_patch_and_delete(acme_api: ApiClient, acme_endpoint: ProviderEndpoint) -> None:
    assert [p["slug"] for p in acme_api.get("providers").json()] == ["openai"]
    got = acme_api.get(f"providers/{acme_endpoint.pk}").json()
    assert got["has_credential"] is True and "credential" not in got

    patched = acme_api.patch(f"providers/{acme_endpoint.pk}", {"base_url": "https://eu.api.openai.com/v1",
                                                               "credential": SECRET})
    assert patched.status_code == 200
    assert patched.json()["base_url"] == "https://eu.api.openai.com/v1"
    assert SECRET not in patched.content.decode()
    acme_endpoint.refresh_from_db()
    assert acme_endpoint.get_credential() == SECRET

    cleared = acme_api.patch(f"providers/{acme_endpoint.pk}", {"credential": ""}).json()
    assert cleared["has_credential"] is False

    assert acme_api.delete(f"providers/{acme_endpoint.pk}").status_code == 204
    assert acme_api.get(f"providers/{acme_endpoint.pk}").status_code == 404
    assert not ProviderEndpoint.objects.exists()


def test_the_stored_credential_is_never_returned(acme_api: ApiClient, acme_endpoint: ProviderEndpoint) -> None:
    plaintext = acme_endpoint.get_credential()
    for response in (acme_api.get("providers"), acme_api.get(f"providers/{acme_endpoint.pk}"),
                     acme_api.patch(f"providers/{acme_endpoint.pk}", {"pricing_provider": "openai"})):
        assert plaintext not in response.content.decode()
        assert acme_endpoint.credential_encrypted not in response.content.decode()


def test_a_duplicate_slug_is_a_409(acme_api: ApiClient, acme_endpoint: ProviderEndpoint) -> None:
    response = acme_api.post("providers", {"slug": "openai"})
    assert response.status_code == 409
    assert "openai" in response.json()["detail"]


def test_patch_may_not_null_a_field(acme_api: ApiClient, acme_endpoint: ProviderEndpoint) -> None:
    response = acme_api.patch(f"providers/{acme_endpoint.pk}", {"base_url": None})
    assert response.status_code == 422 and response.json()["detail"].startswith("base_url:")


def test_an_azure_endpoint_maps_deployments_to_models(acme_api: ApiClient) -> None:
    missing = acme_api.post("providers", {"slug": "azure-openai"})
    assert missing.status_code == 422 and "base_url" in missing.json()["detail"]
    response = acme_api.post("providers", {"slug": "azure-openai", "base_url": "https://acme.openai.azure.com",
                                           "deployments": {"prod-chat": "gpt-4o-mini"}, "credential": SECRET})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["wire_format"], body["pricing_provider"]) == ("azure-openai", "azure")
    assert body["deployments"] == {"prod-chat": "gpt-4o-mini"}
    patched = acme_api.patch(f"providers/{body['id']}",
                             {"deployments": {"prod-chat": "gpt-4o", "emb": "text-embedding-3-small"}})
    assert patched.status_code == 200 and patched.json()["deployments"]["prod-chat"] == "gpt-4o"
    # A custom slug of the azure-openai kind is priced from Azure's list too.
    custom = acme_api.post("providers", {"slug": "azure-eu", "wire_format": "azure-openai",
                                         "base_url": "https://acme-eu.openai.azure.com"})
    assert custom.json()["pricing_provider"] == "azure"


@pytest.mark.parametrize("deployments", [
    {"a/b": "gpt-4o"}, {"x" * 65: "gpt-4o"}, {"ok": ""}, {"ok": "m" * 201}, {"bad\u0000": "gpt-4o"},
    {f"d{i}": "gpt-4o" for i in range(201)}, ["gpt-4o"],
])
def test_deployments_are_bounded_plain_names(acme_api: ApiClient, deployments: object) -> None:
    response = acme_api.post("providers", {"slug": "azure-openai", "base_url": "https://acme.openai.azure.com",
                                           "deployments": deployments})
    assert response.status_code == 422 and "deployments" in response.content.decode()
    assert not ProviderEndpoint.objects.filter(slug="azure-openai").exists()

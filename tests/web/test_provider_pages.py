"""Provider endpoints in the web app: edit, test the connection (a real model-list request, through the
outbound client's address policy), delete after a confirm page, the full proxy URL to copy."""

from __future__ import annotations

import httpx
import pytest
from django.urls import reverse

from billing.models import AuditEntry
from proxy.models import ProviderEndpoint

pytestmark = pytest.mark.django_db


def _endpoint(account, slug: str, wire: str, base: str, credential: str = "sk-up") -> ProviderEndpoint:
    endpoint = ProviderEndpoint(account=account, slug=slug, wire_format=wire, base_url=base)
    endpoint.set_credential(credential)
    endpoint.save()
    return endpoint


def _check_on(page: str) -> str:
    return page.split('id="endpoint-check"')[1].split("</div>")[0]


def test_edit_opens_the_filled_form_and_saves_through_the_audited_service(client_as, alice, acme) -> None:
    endpoint = _endpoint(acme, "vllm", "openai", "https://llm.example.com/v1")
    client = client_as(alice)
    url = reverse("provider_edit", args=["acme", endpoint.pk])
    assert url in client.get(reverse("provider_list", args=["acme"])).content.decode()
    form = client.get(url).content.decode()
    assert 'value="https://llm.example.com/v1"' in form and "disabled" in form.split('name="slug"')[1][:80]
    saved = client.post(url, {"slug": "ignored", "wire_format": "openai", "base_url": "https://llm.example.com/v1",
                              "pricing_provider": "openai"})
    assert saved.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.slug == "vllm" and endpoint.pricing_provider == "openai"
    assert endpoint.get_credential() == "sk-up"  # an empty credential field keeps the stored one
    assert AuditEntry.objects.filter(action="provider.updated", actor=alice, target="vllm").exists()


def test_moving_the_base_url_elsewhere_asks_for_the_credential_again(client_as, alice, acme) -> None:
    endpoint = _endpoint(acme, "vllm", "openai", "https://llm.example.com/v1")
    response = client_as(alice).post(reverse("provider_edit", args=["acme", endpoint.pk]),
                                     {"wire_format": "openai", "base_url": "https://evil.example.net/v1"})
    assert response.status_code == 400 and "enter the credential again" in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.base_url == "https://llm.example.com/v1"


@pytest.mark.parametrize(("wire", "path"), [("openai", "/v1"), ("anthropic", "")])
def test_test_connection_asks_the_real_provider_for_its_models(client_as, alice, acme, simulator, wire,
                                                               path) -> None:
    endpoint = _endpoint(acme, "sim", wire, f"{simulator}{path}")
    client = client_as(alice)
    posted = client.post(reverse("provider_test", args=["acme", endpoint.pk]))
    assert posted.status_code == 302
    check = _check_on(client.get(posted["Location"]).content.decode())
    assert "Connected to sim: it answered 200" in check and 'class="ok"' in check
    [request] = [r for r in httpx.get(f"{simulator}/_sim/requests").json() if r["path"].endswith("/models")]
    assert request["method"] == "GET"
    # Shown once: a refresh does not repeat it.
    assert 'id="endpoint-check"' not in client.get(posted["Location"]).content.decode()


def test_test_connection_says_plainly_what_went_wrong(client_as, alice, acme, simulator) -> None:
    endpoint = _endpoint(acme, "sim", "openai", f"{simulator}/not-an-api")
    client = client_as(alice)
    client.post(reverse("provider_test", args=["acme", endpoint.pk]))
    check = _check_on(client.get(reverse("provider_list", args=["acme"])).content.decode())
    assert "sim answered 404" in check and "<details>" in check


def test_test_connection_keeps_the_private_address_guard(client_as, alice, acme, settings, simulator) -> None:
    endpoint = _endpoint(acme, "sim", "openai", f"{simulator}/v1")  # stored while private URLs were allowed
    settings.TOKONOMICS_ALLOW_PRIVATE_URLS = False
    client = client_as(alice)
    client.post(reverse("provider_test", args=["acme", endpoint.pk]))
    check = _check_on(client.get(reverse("provider_list", args=["acme"])).content.decode())
    assert "private or local network" in check and 'class="bad"' in check


def test_delete_asks_first_then_deletes_and_the_page_offers_the_full_proxy_url(client_as, alice, acme) -> None:
    endpoint = _endpoint(acme, "vllm", "openai", "https://llm.example.com/v1")
    client = client_as(alice)
    page = client.get(reverse("provider_list", args=["acme"])).content.decode()
    assert "http://testserver/proxy/vllm</code>" in page and f'data-copy="proxy-url-{endpoint.pk}"' in page
    url = reverse("provider_delete", args=["acme", endpoint.pk])
    assert f'action="{url}"' in client.get(url).content.decode()
    assert ProviderEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert client.post(url).status_code == 302
    assert not ProviderEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert AuditEntry.objects.filter(action="provider.deleted", target="vllm").exists()


def test_get_on_the_save_address_is_the_providers_page(client_as, alice) -> None:
    response = client_as(alice).get(reverse("provider_save", args=["acme"]))
    assert response.status_code == 302 and response["Location"] == reverse("provider_list", args=["acme"])


@pytest.mark.parametrize("persona", ["dave", "bob"])
def test_only_admins_edit_test_or_delete_endpoints(client_as, acme, persona, request) -> None:
    endpoint = _endpoint(acme, "vllm", "openai", "https://llm.example.com/v1")
    client = client_as(request.getfixturevalue(persona))
    page = client.get(reverse("provider_list", args=["acme"])).content.decode()
    assert reverse("provider_delete", args=["acme", endpoint.pk]) not in page
    for name in ("provider_edit", "provider_delete"):
        assert client.get(reverse(name, args=["acme", endpoint.pk])).status_code == 403
        posted = client.post(reverse(name, args=["acme", endpoint.pk]), {"base_url": "https://x.example"})
        assert posted.status_code == 403
    assert client.post(reverse("provider_test", args=["acme", endpoint.pk])).status_code == 403
    assert ProviderEndpoint.objects.get(pk=endpoint.pk).base_url == "https://llm.example.com/v1"

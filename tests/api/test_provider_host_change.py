"""A stored credential is only ever sent to the host it was entered for: moving an endpoint to another
scheme, host or port needs the credential again (issue 13)."""

from __future__ import annotations

import pytest

from proxy.models import ProviderEndpoint

from ..support import ApiClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("base_url", ["https://attacker.example/v1", "http://api.openai.com/v1",
                                      "https://api.openai.com:8443/v1", "https://API.openai.com.attacker.example/v1"])
def test_moving_to_another_host_without_the_credential_is_refused(
    acme_api: ApiClient, acme_endpoint: ProviderEndpoint, base_url: str
) -> None:
    response = acme_api.patch(f"providers/{acme_endpoint.pk}", {"base_url": base_url})
    assert response.status_code == 422
    assert "credential" in response.json()["detail"]
    acme_endpoint.refresh_from_db()
    assert acme_endpoint.base_url == "https://api.openai.com/v1"
    assert acme_endpoint.get_credential() == "sk-upstream-secret-acme"


def test_moving_with_the_credential_entered_again_is_accepted(
    acme_api: ApiClient, acme_endpoint: ProviderEndpoint
) -> None:
    response = acme_api.patch(f"providers/{acme_endpoint.pk}", {"base_url": "https://eu.example.com/v1",
                                                               "credential": "sk-for-eu"})
    assert response.status_code == 200
    acme_endpoint.refresh_from_db()
    assert acme_endpoint.base_url == "https://eu.example.com/v1" and acme_endpoint.get_credential() == "sk-for-eu"


def test_moving_and_removing_the_credential_is_accepted(acme_api: ApiClient, acme_endpoint: ProviderEndpoint) -> None:
    response = acme_api.patch(f"providers/{acme_endpoint.pk}", {"base_url": "https://eu.example.com/v1",
                                                               "credential": ""})
    assert response.status_code == 200 and response.json()["has_credential"] is False


@pytest.mark.parametrize("base_url", ["https://api.openai.com/v2", "https://API.OpenAI.com:443/v1/"])
def test_a_new_path_on_the_same_host_keeps_the_credential(
    acme_api: ApiClient, acme_endpoint: ProviderEndpoint, base_url: str
) -> None:
    response = acme_api.patch(f"providers/{acme_endpoint.pk}", {"base_url": base_url})
    assert response.status_code == 200, response.content
    acme_endpoint.refresh_from_db()
    assert acme_endpoint.get_credential() == "sk-upstream-secret-acme"

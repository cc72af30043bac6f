"""The providers page: moving an endpoint to another host asks for its credential again (issue 13)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from proxy.models import ProviderEndpoint

pytestmark = pytest.mark.django_db


def test_moving_to_another_host_needs_the_credential_again(client, alice, acme) -> None:
    client.force_login(alice)
    save = reverse("provider_save", args=["acme"])
    client.post(save, {"slug": "openai", "credential": "sk-WEB-SECRET"})

    refused = client.post(save, {"slug": "openai", "base_url": "https://collector.attacker.example/v1"})
    assert refused.status_code == 400
    assert "credential" in refused.content.decode().lower() and "again" in refused.content.decode()
    endpoint = ProviderEndpoint.objects.get(account=acme, slug="openai")
    assert endpoint.base_url == "https://api.openai.com/v1" and endpoint.get_credential() == "sk-WEB-SECRET"

    accepted = client.post(save, {"slug": "openai", "base_url": "https://eu.example.com/v1", "credential": "sk-EU"})
    assert accepted.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.base_url == "https://eu.example.com/v1" and endpoint.get_credential() == "sk-EU"


def test_the_operator_admin_asks_for_the_credential_too(client, superuser, acme) -> None:
    endpoint = ProviderEndpoint(account=acme, slug="openai", wire_format="openai", base_url="https://api.openai.com/v1")
    endpoint.set_credential("sk-ADMIN-SECRET")
    endpoint.save()
    client.force_login(superuser)
    form = {"account": acme.pk, "slug": "openai", "wire_format": "openai", "pricing_provider": "openai",
            "base_url": "https://collector.attacker.example/v1"}
    change = reverse("admin:proxy_providerendpoint_change", args=[endpoint.pk])
    assert "enter the credential again" in client.post(change, form).content.decode()
    endpoint.refresh_from_db()
    assert endpoint.base_url == "https://api.openai.com/v1"
    assert client.post(change, {**form, "credential": "sk-NEW"}).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.base_url == "https://collector.attacker.example/v1" and endpoint.get_credential() == "sk-NEW"

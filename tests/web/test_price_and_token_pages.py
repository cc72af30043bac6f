"""Price overrides and management tokens in the web app (before: Django admin and the command line only)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.accounts.management_tokens import hash_token
from billing.models import AuditEntry, ManagementToken, PriceOverride

from ..support import ApiClient

pytestmark = pytest.mark.django_db

PRICE = {"provider": "openai", "model": "gpt-4o-mini", "input_per_mtok": "0.15", "output_per_mtok": "0.6"}


def test_admin_creates_edits_and_deletes_a_price_through_the_audited_services(client_as, carol, acme) -> None:
    client = client_as(carol)
    created = client.post(reverse("price_create", args=["acme"]), PRICE)
    assert created.status_code == 302
    price = PriceOverride.objects.get(account=acme)
    assert price.input_per_mtok == Decimal("0.15")
    page = client.get(reverse("price_list", args=["acme"])).content.decode()
    assert "gpt-4o-mini" in page and "$0.15" in page
    edit_url = reverse("price_update", args=["acme", price.pk])
    assert 'value="0.600000"' in client.get(edit_url).content.decode()
    assert client.post(edit_url, {**PRICE, "model": "ignored", "output_per_mtok": "0.8"}).status_code == 302
    price.refresh_from_db()
    assert price.output_per_mtok == Decimal("0.8") and price.model == "gpt-4o-mini"
    delete_url = reverse("price_delete", args=["acme", price.pk])
    assert f'action="{delete_url}"' in client.get(delete_url).content.decode()
    assert PriceOverride.objects.filter(pk=price.pk).exists()
    assert client.post(delete_url).status_code == 302
    assert not PriceOverride.objects.filter(pk=price.pk).exists()
    actions = list(AuditEntry.objects.filter(account=acme, actor=carol).values_list("action", flat=True))
    assert {"price.created", "price.updated", "price.deleted"} <= set(actions)


def test_a_second_price_for_the_same_model_is_refused_not_overwritten(client_as, carol, acme) -> None:
    client = client_as(carol)
    client.post(reverse("price_create", args=["acme"]), PRICE)
    again = client.post(reverse("price_create", args=["acme"]), {**PRICE, "input_per_mtok": "9"})
    assert again.status_code == 400 and "already has a price here" in again.content.decode()
    assert PriceOverride.objects.get(account=acme).input_per_mtok == Decimal("0.15")
    negative = client.post(reverse("price_create", args=["acme"]), {**PRICE, "model": "m2", "input_per_mtok": "-1"})
    assert negative.status_code == 400 and "cannot be negative" in negative.content.decode()


def test_viewers_and_members_see_prices_but_change_none(client_as, dave, bob, acme) -> None:
    price = PriceOverride.objects.create(account=acme, provider="openai", model="m", input_per_mtok=1,
                                         output_per_mtok=2)
    for user in (dave, bob):
        client = client_as(user)
        page = client.get(reverse("price_list", args=["acme"])).content.decode()
        assert ">m<" in page and reverse("price_delete", args=["acme", price.pk]) not in page
        assert client.post(reverse("price_create", args=["acme"]), {**PRICE, "model": "x"}).status_code == 403
        assert client.get(reverse("price_update", args=["acme", price.pk])).status_code == 403
        assert client.post(reverse("price_update", args=["acme", price.pk]), PRICE).status_code == 403
        assert client.post(reverse("price_delete", args=["acme", price.pk])).status_code == 403
    assert PriceOverride.objects.filter(account=acme).count() == 1


def test_admin_creates_a_token_shown_once_that_the_api_accepts_then_revokes_it(client_as, carol, acme) -> None:
    client = client_as(carol)
    posted = client.post(reverse("token_create", args=["acme"]), {"name": "terraform", "read_only": "on"})
    assert posted.status_code == 302
    page = client.get(posted["Location"])
    plaintext = page.content.decode().split('id="new-token-value">')[1].split("<")[0]
    assert "no-store" in page["Cache-Control"]
    token = ManagementToken.objects.get(account=acme, name="terraform")
    assert token.token_hash == hash_token(plaintext) and token.role == "viewer"
    assert plaintext not in client.get(posted["Location"]).content.decode()
    assert ApiClient(plaintext).get("budgets").status_code == 200
    revoke_url = reverse("token_revoke", args=["acme", token.pk])
    assert f'action="{revoke_url}"' in client.get(revoke_url).content.decode()
    assert client.post(revoke_url).status_code == 302
    assert ApiClient(plaintext).get("budgets").status_code == 401
    actions = set(AuditEntry.objects.filter(account=acme, actor=carol).values_list("action", flat=True))
    assert {"management_token.created", "management_token.revoked"} <= actions
    assert plaintext not in str(list(AuditEntry.objects.values_list("before", "after")))


def test_only_admins_reach_the_tokens_page(client_as, dave, bob, acme) -> None:
    token = ManagementToken.objects.create(account=acme, name="ci", prefix="mt_x", token_hash="h" * 64)
    for user in (dave, bob):
        client = client_as(user)
        assert "API tokens" not in client.get(reverse("budget_list", args=["acme"])).content.decode()
        assert client.get(reverse("token_list", args=["acme"])).status_code == 403
        assert client.post(reverse("token_create", args=["acme"]), {"name": "x"}).status_code == 403
        assert client.post(reverse("token_revoke", args=["acme", token.pk])).status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None and ManagementToken.objects.filter(account=acme).count() == 1


def test_outsiders_get_404_on_prices_and_tokens(client_as, charlie, acme) -> None:
    client = client_as(charlie)
    for name in ("price_list", "token_list"):
        assert client.get(reverse(name, args=["acme"])).status_code == 404

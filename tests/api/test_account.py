"""GET /account: the token's account, its plan and limits; PATCH /account: its proxy policy."""

from __future__ import annotations

import pytest

from billing.models import Account, AuditEntry

from ..support import ApiClient

pytestmark = pytest.mark.django_db


def test_account_shows_the_plan_and_its_limits(acme_api: ApiClient) -> None:
    response = acme_api.get("account")
    assert response.status_code == 200
    account = response.json()
    assert account["slug"] == "acme" and account["name"] == "Acme Inc" and account["timezone"] == "UTC"
    assert account["retention_days"] == 90
    assert account["plan"] == {
        "slug": "pro", "name": "Pro", "price_usd_month": "99.00", "max_seats": 5, "max_alert_rules": None,
        "retention_days": 90, "monthly_request_limit": 10_000_000, "sso": False, "white_label": False,
    }
    assert account["token"]["name"] == "alice-admin" and account["token"]["role"] == "admin"
    assert "token_hash" not in response.content.decode()


def test_an_accounts_own_retention_wins_over_the_plans(acme, acme_viewer_api: ApiClient) -> None:
    acme.retention_days = 400
    acme.save()
    account = acme_viewer_api.get("account").json()
    assert account["retention_days"] == 400 and account["plan"]["retention_days"] == 90
    assert account["token"]["role"] == "viewer"


def test_an_admin_token_sets_the_proxy_policy_and_the_change_is_audited(acme, acme_api: ApiClient) -> None:
    account = acme_api.get("account").json()
    assert (account["allow_unpriced_models"], account["allow_unmetered_routes"], account["on_redis_unavailable"]) == (
        False, False, "default")
    response = acme_api.patch("account", {"allow_unpriced_models": True})
    assert response.status_code == 200 and response.json()["allow_unpriced_models"] is True
    assert response.json()["on_redis_unavailable"] == "default"  # left out, left alone
    assert Account.objects.get(pk=acme.pk).allow_unpriced_models is True
    entry = AuditEntry.objects.get(action="account.updated")
    assert (entry.before, entry.after) == ({"allow_unpriced_models": False}, {"allow_unpriced_models": True})
    assert entry.actor is None and entry.actor_label.startswith("alice-admin (mt_")
    assert entry.actor_kind == "token" and entry.actor_token.name == "alice-admin"


@pytest.mark.parametrize("body", [{"allow_unpriced_models": None}, {"allow_unpriced_models": "maybe"},
                                  {"on_redis_unavailable": "sometimes"}, {"slug": "other"}, {"name": "Renamed"}])
def test_the_account_policy_rejects_what_it_does_not_know(acme, acme_api: ApiClient, body) -> None:
    assert acme_api.patch("account", body).status_code == 422
    assert not AuditEntry.objects.exclude(action="management_token.created").exists()
    assert Account.objects.get(pk=acme.pk).name == "Acme Inc"


def test_an_admin_token_turns_the_response_cache_on_audited_as_a_cache_change(acme, acme_api: ApiClient) -> None:
    account = acme_api.get("account").json()
    assert (account["cache_enabled"], account["cache_ttl_seconds"], account["cache_nonzero_temperature"]) == (
        False, 3600, False)
    response = acme_api.patch("account", {"cache_enabled": True, "cache_ttl_seconds": 120,
                                          "allow_unpriced_models": True})
    assert response.status_code == 200
    assert (response.json()["cache_enabled"], response.json()["cache_ttl_seconds"]) == (True, 120)
    entry = AuditEntry.objects.get(action="account.cache_changed")
    assert (entry.before, entry.after) == ({"cache_enabled": False, "cache_ttl_seconds": 3600},
                                           {"cache_enabled": True, "cache_ttl_seconds": 120})
    assert AuditEntry.objects.get(action="account.updated").after == {"allow_unpriced_models": True}


@pytest.mark.parametrize("body", [{"cache_enabled": None}, {"cache_ttl_seconds": 0},
                                  {"cache_max_entry_bytes": 10}, {"cache_max_total_bytes": 2**40}])
def test_the_cache_settings_are_bounded(acme, acme_api: ApiClient, body) -> None:
    assert acme_api.patch("account", body).status_code == 422
    assert not AuditEntry.objects.filter(action="account.cache_changed").exists()

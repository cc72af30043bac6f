"""GET /account: the token's account, its plan and limits."""

from __future__ import annotations

import pytest

from .conftest import ApiClient

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


def test_an_accounts_own_retention_wins_over_the_plans(acme, acme_viewer_api: ApiClient) -> None:  # type: ignore[no-untyped-def]
    acme.retention_days = 400
    acme.save()
    account = acme_viewer_api.get("account").json()
    assert account["retention_days"] == 400 and account["plan"]["retention_days"] == 90
    assert account["token"]["role"] == "viewer"

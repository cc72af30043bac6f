"""Budgets over the API, validated as applyconfig validates them; limits are decimal strings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from alerts.models import AlertChannel
from billing.models import Budget
from proxy.models import ApiKey

from ..support import ApiClient

pytestmark = pytest.mark.django_db


def test_create_list_get(acme_api: ApiClient, acme_channel: AlertChannel) -> None:
    response = acme_api.post(
        "budgets",
        {"scope": "tenant", "match": "*", "period": "month", "limit_usd": "5.25", "hard": True,
         "alert_at": [90, 50, 50], "channel_ids": [acme_channel.pk]},
    )
    assert response.status_code == 201
    created = response.json()
    assert created["limit_usd"] == "5.250000"
    assert created["alert_at"] == [50, 90]
    assert created["channel_ids"] == [acme_channel.pk]
    assert acme_api.get(f"budgets/{created['id']}").json() == created
    assert acme_api.get("budgets").json() == [created]
    assert Budget.objects.get().limit_usd == Decimal("5.25")


def test_defaults_follow_applyconfig(acme_api: ApiClient) -> None:
    created = acme_api.post("budgets", {"scope": "account", "period": "day", "limit_usd": 20}).json()
    assert created["match"] == "" and created["hard"] is True
    assert created["alert_at"] == [50, 75, 90, 100] and created["channel_ids"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "account", "match": "acme", "period": "day", "limit_usd": "1"}, "match"),
        ({"scope": "tenant", "period": "day", "limit_usd": "1"}, "match"),
        ({"scope": "feature", "match": "x", "period": "fortnight", "limit_usd": "1"}, "period"),
        ({"scope": "team", "period": "day", "limit_usd": "1"}, "scope"),
        ({"scope": "account", "period": "day", "limit_usd": "-1"}, "limit_usd"),
        ({"scope": "account", "period": "day", "limit_usd": "0.0000001"}, "limit_usd"),
        ({"scope": "account", "period": "day", "limit_usd": "ten dollars"}, "limit_usd"),
        ({"scope": "account", "period": "day", "limit_usd": "1", "alert_at": [0]}, "alert_at"),
        ({"scope": "account", "period": "day", "limit_usd": "1", "alert_at": [1001]}, "alert_at"),
        ({"scope": "key", "match": "no-such-key", "period": "day", "limit_usd": "1"}, "match"),
        ({"scope": "account", "period": "day", "limit_usd": "1", "channel_ids": [987654]}, "channel_ids"),
        ({"scope": "account", "period": "day"}, "limit_usd"),
    ],
)
def test_invalid_budgets_get_422_naming_the_field(acme_api: ApiClient, body: dict, field: str) -> None:
    response = acme_api.post("budgets", body)
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert any(field in map(str, error["loc"]) for error in response.json()["errors"])
    assert not Budget.objects.exists()


def test_a_key_budget_names_an_existing_key_or_star(acme_api: ApiClient, acme_key: ApiKey) -> None:
    named = acme_api.post("budgets", {"scope": "key", "match": "ci", "period": "day", "limit_usd": "1"})
    each = acme_api.post("budgets", {"scope": "key", "match": "*", "period": "day", "limit_usd": "1"})
    assert named.status_code == each.status_code == 201


def test_a_second_budget_on_the_same_target_is_a_409(acme_api: ApiClient, acme_budget: Budget) -> None:
    response = acme_api.post("budgets", {"scope": "account", "period": "month", "limit_usd": "1"})
    assert response.status_code == 409
    assert "already has a budget on account (month)" in response.json()["detail"]


def test_patch_is_validated_whole(acme_api: ApiClient, acme_budget: Budget) -> None:
    raised = acme_api.patch(f"budgets/{acme_budget.pk}", {"limit_usd": "750.5", "hard": False})
    assert raised.status_code == 200
    assert raised.json()["limit_usd"] == "750.500000" and raised.json()["hard"] is False
    assert raised.json()["alert_at"] == [50, 100]
    to_tenant = acme_api.patch(f"budgets/{acme_budget.pk}", {"scope": "tenant"})
    assert to_tenant.status_code == 422 and "match" in to_tenant.json()["detail"]
    acme_budget.refresh_from_db()
    assert acme_budget.scope == "account"


def test_patch_sets_and_clears_channels(acme_api: ApiClient, acme_budget: Budget, acme_channel: AlertChannel) -> None:
    assert acme_api.patch(f"budgets/{acme_budget.pk}", {"channel_ids": [acme_channel.pk]}).json()["channel_ids"] == [
        acme_channel.pk
    ]
    assert acme_api.patch(f"budgets/{acme_budget.pk}", {"channel_ids": []}).json()["channel_ids"] == []


def test_delete(acme_api: ApiClient, acme_budget: Budget) -> None:
    assert acme_api.delete(f"budgets/{acme_budget.pk}").status_code == 204
    assert acme_api.get(f"budgets/{acme_budget.pk}").status_code == 404
    assert not Budget.objects.exists()

"""Every endpoint tried as charlie, whose token belongs to globex: acme's objects are not found, never shown,
never changed."""

from __future__ import annotations

import pytest

from ..support import ApiClient
from .conftest import OBJECT_OPERATIONS, AcmeObjects, account_snapshot, operation_id, usage_record

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("operation", OBJECT_OPERATIONS, ids=operation_id)
def test_another_accounts_objects_are_not_found(
    operation, acme_objects: AcmeObjects, globex_api: ApiClient
) -> None:
    method, path, body = operation
    before = account_snapshot()
    response = globex_api.request(method, path.format(**acme_objects.ids), body)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "acme" not in response.content.decode().lower()
    assert account_snapshot() == before


@pytest.mark.parametrize("path", ["keys", "providers", "budgets", "alert-channels", "alert-rules", "sessions"])
def test_another_accounts_lists_are_empty(path: str, acme_objects: AcmeObjects, globex_api: ApiClient) -> None:
    assert globex_api.get(path).json() == []


def test_another_accounts_usage_is_invisible(acme_objects: AcmeObjects, globex, globex_api: ApiClient) -> None:
    usage_record(globex, "req_globex_1", feature="globex-feature")
    records = globex_api.get("usage/records").json()["items"]
    assert [r["request_id"] for r in records] == ["req_globex_1"]
    assert globex_api.get("usage/records", key_id=acme_objects.key.pk).json()["items"] == []
    groups = globex_api.get("usage/aggregates", group_by="feature").json()["groups"]
    assert [g["group"] for g in groups] == ["globex-feature"]
    assert globex_api.get("usage/aggregates", group_by="key", key_id=acme_objects.key.pk).json()["groups"] == []


def test_the_account_endpoint_shows_the_tokens_own_account(acme_objects: AcmeObjects, globex_api: ApiClient) -> None:
    assert globex_api.get("account").json()["slug"] == "globex"


def test_another_accounts_channels_cannot_be_attached(acme_objects: AcmeObjects, globex_api: ApiClient) -> None:
    channel_id = acme_objects.channel.pk
    budget = globex_api.post(
        "budgets", {"scope": "account", "period": "month", "limit_usd": "10", "channel_ids": [channel_id]}
    )
    assert budget.status_code == 422 and "channel_ids" in budget.json()["detail"]
    rule = globex_api.post("alert-rules", {"scope": "tenant", "channel_ids": [channel_id]})
    assert rule.status_code == 422 and "channel_ids" in rule.json()["detail"]


def test_a_key_budget_cannot_name_another_accounts_key(acme_objects: AcmeObjects, globex_api: ApiClient) -> None:
    response = globex_api.post("budgets", {"scope": "key", "match": "ci", "period": "day", "limit_usd": "1"})
    assert response.status_code == 422 and "match" in response.json()["detail"]


def test_the_same_names_may_exist_in_both_accounts(acme_objects: AcmeObjects, globex_api: ApiClient) -> None:
    assert globex_api.post("keys", {"name": "ci"}).status_code == 201
    assert globex_api.post("providers", {"slug": "openai"}).status_code == 201

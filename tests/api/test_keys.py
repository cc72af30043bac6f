"""Keys over the API: the plaintext once, then only its prefix; patch, revoke, never delete."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from billing.models import Budget
from proxy.directory import CONFIG_VERSION_KEY
from proxy.keys import hash_key, is_well_formed
from proxy.models import ApiKey
from tokonomics.redis_client import sync_redis

from ..support import ApiClient

pytestmark = pytest.mark.django_db


def test_create_returns_the_plaintext_once(acme_api: ApiClient) -> None:
    response = acme_api.post(
        "keys",
        {"name": "support-bot", "environment": "staging", "allowed_models": ["gpt-4o-mini", "claude-*"],
         "expires_at": "2099-01-01T00:00:00Z", "requests_per_minute": 60, "tokens_per_minute": 100000},
    )
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    created = response.json()
    plaintext = created["key"]
    assert is_well_formed(plaintext) and plaintext.startswith(created["prefix"])
    assert created["allowed_models"] == ["gpt-4o-mini", "claude-*"]
    assert created["environment"] == "staging" and created["active"] is True
    assert created["expires_at"].startswith("2099-01-01T00:00:00")
    key = ApiKey.objects.get(pk=created["id"])
    assert key.key_hash == hash_key(plaintext)

    for response in (acme_api.get(f"keys/{key.pk}"), acme_api.get("keys"), acme_api.patch(f"keys/{key.pk}", {})):
        assert response.status_code == 200
        assert plaintext not in response.content.decode()
        assert plaintext[len(created["prefix"]):] not in response.content.decode()
        assert "key_hash" not in response.content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM proxy_apikey")
        assert plaintext not in repr(cursor.fetchall())


def test_list_and_get(acme_api: ApiClient, acme_key: ApiKey) -> None:
    listed = acme_api.get("keys").json()
    assert [k["name"] for k in listed] == ["ci"]
    got = acme_api.get(f"keys/{acme_key.pk}").json()
    assert got == listed[0]
    assert set(got) == {
        "id", "name", "prefix", "environment", "allowed_models", "expires_at", "revoked_at", "active",
        "requests_per_minute", "tokens_per_minute", "max_concurrent", "created_at",
    }


def test_patch_changes_only_what_is_sent(acme_api: ApiClient, acme_key: ApiKey) -> None:
    acme_key.requests_per_minute = 10
    acme_key.save()
    response = acme_api.patch(f"keys/{acme_key.pk}", {"allowed_models": ["gpt-4o"], "max_concurrent": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["allowed_models"] == ["gpt-4o"] and body["max_concurrent"] == 4
    assert body["requests_per_minute"] == 10 and body["name"] == "ci"
    cleared = acme_api.patch(f"keys/{acme_key.pk}", {"requests_per_minute": None, "expires_at": None}).json()
    assert cleared["requests_per_minute"] is None and cleared["max_concurrent"] == 4


def test_renaming_a_key_carries_its_key_budgets(acme_api: ApiClient, acme_key: ApiKey) -> None:
    budget = Budget.objects.create(account=acme_key.account, scope="key", match="ci", period="day",
                                   limit_usd=Decimal(1))
    assert acme_api.patch(f"keys/{acme_key.pk}", {"name": "ci-renamed"}).json()["name"] == "ci-renamed"
    budget.refresh_from_db()
    assert budget.match == "ci-renamed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "allowed_models": "gpt-4o"}, "allowed_models"),
        ({"name": "ok", "requests_per_minute": 0}, "requests_per_minute"),
        ({"name": "ok", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),  # no time zone
        ({"name": "ok", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),  # in the past
        ({"name": "ok", "unknown_field": 1}, "unknown_field"),
        ({"name": "nul\x00byte"}, "name"),
    ],
)
def test_invalid_keys_get_422_naming_the_field(acme_api: ApiClient, body: dict, field: str) -> None:
    response = acme_api.post("keys", body)
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert not ApiKey.objects.exists()


def test_patch_may_not_null_a_required_field(acme_api: ApiClient, acme_key: ApiKey) -> None:
    response = acme_api.patch(f"keys/{acme_key.pk}", {"name": None})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("name:")


def test_a_duplicate_name_is_a_409(acme_api: ApiClient, acme_key: ApiKey) -> None:
    response = acme_api.post("keys", {"name": "ci"})
    assert response.status_code == 409
    assert "already has a key named 'ci'" in response.json()["detail"]


def test_revoke_is_immediate_and_idempotent(
    acme_api: ApiClient, acme_key: ApiKey, django_capture_on_commit_callbacks
) -> None:
    redis = sync_redis()
    with django_capture_on_commit_callbacks(execute=True):
        response = acme_api.post(f"keys/{acme_key.pk}/revoke")
    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None and response.json()["active"] is False
    assert int(redis.get(CONFIG_VERSION_KEY) or 0) >= 1  # the proxy drops the key at its next poll
    acme_key.refresh_from_db()
    first = acme_key.revoked_at
    assert acme_api.post(f"keys/{acme_key.pk}/revoke").json()["revoked_at"] is not None
    acme_key.refresh_from_db()
    assert acme_key.revoked_at == first


def test_every_key_change_moves_the_configuration_version(
    acme_api: ApiClient, acme_key: ApiKey, django_capture_on_commit_callbacks
) -> None:
    redis = sync_redis()
    with django_capture_on_commit_callbacks(execute=True):
        acme_api.post("keys", {"name": "another"})
    after_create = int(redis.get(CONFIG_VERSION_KEY) or 0)
    with django_capture_on_commit_callbacks(execute=True):
        acme_api.patch(f"keys/{acme_key.pk}", {"allowed_models": ["gpt-4o"]})
    assert after_create >= 1 and int(redis.get(CONFIG_VERSION_KEY)) > after_create


def test_keys_are_never_deleted(acme_api: ApiClient, acme_key: ApiKey) -> None:
    assert acme_api.delete(f"keys/{acme_key.pk}").status_code == 405
    assert ApiKey.objects.filter(pk=acme_key.pk).exists()


def test_a_viewer_token_cannot_revoke(acme_viewer_api: ApiClient, acme_key: ApiKey) -> None:
    assert acme_viewer_api.post(f"keys/{acme_key.pk}/revoke").status_code == 403
    acme_key.refresh_from_db()
    assert acme_key.revoked_at is None

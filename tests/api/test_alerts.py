"""Alert channels and rules over the API: write-only secrets, the plan's cap on rules."""

from __future__ import annotations

import base64

import pytest

from alerts.models import AlertChannel, AlertRule

from ..support import ApiClient

pytestmark = pytest.mark.django_db

GIVEN_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()


def test_a_webhook_without_a_secret_gets_one_returned_once(acme_api: ApiClient) -> None:
    response = acme_api.post("alert-channels", {"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/a"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert created["has_secret"] is True
    assert AlertChannel.objects.get(pk=created["id"]).get_secret() == secret
    for later in (acme_api.get(f"alert-channels/{created['id']}"), acme_api.get("alert-channels"),
                  acme_api.patch(f"alert-channels/{created['id']}", {"name": "hook-2"})):
        assert secret not in later.content.decode()
        items = later.json() if isinstance(later.json(), list) else [later.json()]
        assert all("secret" not in item for item in items)


def test_a_given_secret_is_stored_and_not_echoed(acme_api: ApiClient) -> None:
    body = {"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/a", "secret": GIVEN_SECRET}
    response = acme_api.post("alert-channels", body)
    assert response.status_code == 201
    assert response.json()["secret"] is None
    assert GIVEN_SECRET not in response.content.decode()
    assert AlertChannel.objects.get().get_secret() == GIVEN_SECRET


def test_email_and_slack_channels(acme_api: ApiClient) -> None:
    email = acme_api.post("alert-channels", {"name": "ops", "kind": "email", "emails": ["ops@acme.test"]})
    slack = acme_api.post("alert-channels", {"name": "chat", "kind": "slack", "url": "https://hooks.slack.com/x"})
    assert email.status_code == slack.status_code == 201
    assert email.json()["emails"] == ["ops@acme.test"] and email.json()["secret"] is None
    assert slack.json()["has_secret"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "m", "kind": "email"}, "emails"),
        ({"name": "m", "kind": "email", "emails": ["not-an-address"]}, "emails"),
        ({"name": "m", "kind": "email", "emails": ["a@b.test"], "url": "https://x.example.com"}, "url"),
        ({"name": "h", "kind": "webhook"}, "url"),
        ({"name": "h", "kind": "webhook", "url": "gopher://x.example.com"}, "url"),
        ({"name": "h", "kind": "webhook", "url": "https://x.example.com", "secret": "hunter2"}, "secret"),
        ({"name": "h", "kind": "webhook", "url": "https://x.example.com", "secret": "whsec_c2hvcnQ="}, "secret"),
        ({"name": "s", "kind": "slack", "url": "https://x.example.com", "secret": GIVEN_SECRET}, "secret"),
        ({"name": "p", "kind": "pager", "url": "https://x.example.com"}, "kind"),
        ({"name": "", "kind": "slack", "url": "https://x.example.com"}, "name"),
    ],
)
def test_invalid_channels_get_422_naming_the_field(acme_api: ApiClient, body: dict, field: str) -> None:
    response = acme_api.post("alert-channels", body)
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert not AlertChannel.objects.exists()


def test_channel_patch_and_delete(acme_api: ApiClient, acme_channel: AlertChannel) -> None:
    patched = acme_api.patch(f"alert-channels/{acme_channel.pk}", {"url": "https://hooks.example.com/new",
                                                                    "secret": GIVEN_SECRET})
    assert patched.status_code == 200
    assert patched.json()["url"] == "https://hooks.example.com/new"
    acme_channel.refresh_from_db()
    assert acme_channel.get_secret() == GIVEN_SECRET
    assert acme_api.patch(f"alert-channels/{acme_channel.pk}", {"kind": "email"}).status_code == 422
    assert acme_api.delete(f"alert-channels/{acme_channel.pk}").status_code == 204
    assert not AlertChannel.objects.exists()


def test_a_duplicate_channel_name_is_a_409(acme_api: ApiClient, acme_channel: AlertChannel) -> None:
    response = acme_api.post("alert-channels", {"name": "ops-hook", "kind": "slack", "url": "https://x.example.com"})
    assert response.status_code == 409 and "ops-hook" in response.json()["detail"]


def test_rule_create_list_get_patch_delete(acme_api: ApiClient, acme_channel: AlertChannel) -> None:
    response = acme_api.post(
        "alert-rules",
        {"scope": "feature", "match": "support-bot", "window_minutes": 30, "multiplier": "3.5", "floor_usd": "2",
         "channel_ids": [acme_channel.pk]},
    )
    assert response.status_code == 201
    rule = response.json()
    assert rule["kind"] == "burn_rate" and rule["multiplier"] == "3.50" and rule["floor_usd"] == "2.000000"
    assert rule["channel_ids"] == [acme_channel.pk]
    assert acme_api.get("alert-rules").json() == [rule]
    assert acme_api.get(f"alert-rules/{rule['id']}").json() == rule
    patched = acme_api.patch(f"alert-rules/{rule['id']}", {"window_minutes": 60, "channel_ids": []}).json()
    assert patched["window_minutes"] == 60 and patched["channel_ids"] == [] and patched["match"] == "support-bot"
    assert acme_api.delete(f"alert-rules/{rule['id']}").status_code == 204
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "planet"}, "scope"),
        ({"scope": "tenant", "window_minutes": 0}, "window_minutes"),
        ({"scope": "tenant", "window_minutes": 1441}, "window_minutes"),
        ({"scope": "tenant", "multiplier": "1"}, "multiplier"),
        ({"scope": "tenant", "floor_usd": "-0.01"}, "floor_usd"),
        ({"scope": "tenant", "kind": "anomaly"}, "kind"),
    ],
)
def test_invalid_rules_get_422_naming_the_field(acme_api: ApiClient, body: dict, field: str) -> None:
    response = acme_api.post("alert-rules", body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_a_duplicate_rule_is_a_409(acme_api: ApiClient, acme_rule: AlertRule) -> None:
    response = acme_api.post("alert-rules", {"scope": "feature", "match": "*"})
    assert response.status_code == 409


def test_the_plans_rule_limit_is_enforced_with_a_reason(globex_api: ApiClient) -> None:
    # globex is on Starter: three alert rules.
    for scope in ("account", "tenant", "feature"):
        assert globex_api.post("alert-rules", {"scope": scope}).status_code == 201
    response = globex_api.post("alert-rules", {"scope": "key"})
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "Starter plan allows 3 alert rules" in detail
    assert "Delete a rule" in detail and "Pro" in detail
    assert AlertRule.objects.count() == 3


SLACK_URL = "https://hooks.slack.com/services/T000/B000/XOXBSECRETTOKEN0123456789"


def test_sending_back_the_masked_slack_url_keeps_the_real_one(acme_api: ApiClient) -> None:
    created = acme_api.post("alert-channels", {"name": "chat", "kind": "slack", "url": SLACK_URL}).json()
    got = acme_api.get(f"alert-channels/{created['id']}").json()
    assert got["url"] != SLACK_URL and got["url"].endswith("6789")
    # A client that round-trips what it read: the masked URL means "unchanged".
    patched = acme_api.patch(f"alert-channels/{created['id']}", {"name": "ops-chat", "url": got["url"]})
    assert patched.status_code == 200 and patched.json()["url"] == got["url"]
    assert AlertChannel.objects.get(pk=created["id"]).destination_url() == SLACK_URL
    # Any other masked-looking URL is refused, not stored as a destination.
    other = acme_api.patch(f"alert-channels/{created['id']}", {"url": "https://hooks.slack.com/…9999"})
    assert other.status_code == 422 and "masked" in str(other.json()["detail"])
    assert AlertChannel.objects.get(pk=created["id"]).destination_url() == SLACK_URL


def test_channels_and_rules_are_disabled_and_enabled_through_the_api(acme_api: ApiClient,
                                                                     acme_channel: AlertChannel) -> None:
    assert acme_api.get(f"alert-channels/{acme_channel.pk}").json()["enabled"] is True
    patched = acme_api.patch(f"alert-channels/{acme_channel.pk}", {"enabled": False})
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    rule = acme_api.post("alert-rules", {"scope": "feature"}).json()
    assert rule["enabled"] is True
    assert acme_api.patch(f"alert-rules/{rule['id']}", {"enabled": False}).json()["enabled"] is False
    assert acme_api.patch(f"alert-rules/{rule['id']}", {"enabled": None}).status_code == 422


def test_channels_subscribe_to_event_types(acme_api: ApiClient, globex_api: ApiClient) -> None:
    from typing import get_args

    from alerts.models import BUDGET_ALERT_TYPES, SUBSCRIBABLE_TYPES
    from alerts.schemas import EventType
    from billing.models import AuditEntry

    assert get_args(EventType) == SUBSCRIBABLE_TYPES  # the schema's list is the model's
    plain = acme_api.post("alert-channels", {"name": "plain", "kind": "webhook", "url": "https://hooks.example.com/a"})
    assert plain.json()["event_types"] == list(BUDGET_ALERT_TYPES)  # the default: budget alerts only
    chosen = acme_api.post("alert-channels", {"name": "keys", "kind": "webhook", "url": "https://hooks.example.com/b",
                                              "event_types": ["key.revoked", "key.created", "key.created"]})
    assert chosen.status_code == 201 and chosen.json()["event_types"] == ["key.created", "key.revoked"]
    channel_id = chosen.json()["id"]
    patched = acme_api.patch(f"alert-channels/{channel_id}", {"event_types": ["rate_limit.exceeded"]})
    assert patched.status_code == 200 and patched.json()["event_types"] == ["rate_limit.exceeded"]
    entry = AuditEntry.objects.filter(action="alert_channel.updated").latest("pk")
    assert (entry.before["event_types"], entry.after["event_types"]) == (["key.created", "key.revoked"],
                                                                         ["rate_limit.exceeded"])
    assert acme_api.patch(f"alert-channels/{channel_id}", {"name": "k2"}).json()["event_types"] == [
        "rate_limit.exceeded"]  # left out: unchanged
    for bad in (["key.leaked"], None, "key.created", ["x" * 5000]):
        refused = acme_api.patch(f"alert-channels/{channel_id}", {"event_types": bad})
        assert refused.status_code == 422 and "event_types" in refused.json()["detail"]
        assert "x" * 200 not in refused.content.decode()
    assert globex_api.patch(f"alert-channels/{channel_id}", {"event_types": []}).status_code == 404
    assert AlertChannel.objects.get(pk=channel_id).event_types == ["rate_limit.exceeded"]

"""Webhook events beyond budgets (issue 19): key.created / revoked / rotated / expiring, rate_limit.exceeded,
budget.denied and plan.limit_approaching, each delivered signed to a real local receiver, only to the
channels subscribed to its type, never to another account's; the denial events keep their dedupe windows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from alerts.denial_events import denial_events_fire
from alerts.evaluate import plan_request_limits_check
from alerts.key_events import keys_expiring_check
from alerts.models import BUDGET_ALERT_TYPES, AlertChannel, AlertDelivery, AlertEvent
from billing.models import Budget, UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.periods import period_bounds
from proxy.quota import plan_counter_key
from proxy.services import api_key_create, api_key_revoke, api_key_rotate, config_version_bump
from tokonomics.audit import Actor
from tokonomics.redis_client import sync_redis

from ..support import CHAT, KEY, wait_until
from .conftest import WebhookReceiver, webhook_channel

ACTOR = Actor.of_system("test")


def _subscribed(account, receiver: WebhookReceiver, *types: str, name: str = "hooks") -> AlertChannel:
    channel = webhook_channel(account, receiver, name=name)
    channel.event_types = list(types)
    channel.save()
    return channel


def _ingest_until(done: Callable[[], bool]) -> None:
    """The proxy writes its records to the stream after answering: ingest until they are all in."""
    wait_until(lambda: usage_ingest(max_seconds=0.5) >= 0 and done(), timeout=20)


def _signed_and_well_formed(receiver: WebhookReceiver, count: int) -> list[dict]:
    delivered = receiver.wait_for(count)
    assert len(delivered) == count, receiver.deliveries
    # The receiver answers 200 only to a valid Standard-Webhooks signature on a well-formed body.
    assert all(d.status == 200 and d.problems == [] for d in delivered)
    return [d.payload for d in delivered]


@pytest.mark.django_db
def test_key_lifecycle_events_reach_subscribed_channels_only(
    acme, globex, receiver, django_capture_on_commit_callbacks
) -> None:
    _subscribed(acme, receiver, "key.created", "key.revoked", "key.rotated")
    with WebhookReceiver(secret=receiver.secret) as unsubscribed, WebhookReceiver(secret=receiver.secret) as other:
        webhook_channel(acme, unsubscribed, name="budgets-only")  # the default: budget alerts only
        _subscribed(globex, other, "key.created", "key.revoked", "key.rotated")
        with django_capture_on_commit_callbacks(execute=True):
            key, _ = api_key_create(account=acme, actor=ACTOR, name="ci")
        with django_capture_on_commit_callbacks(execute=True):
            api_key_rotate(account=acme, actor=ACTOR, key=key, grace=timedelta(hours=1))
        with django_capture_on_commit_callbacks(execute=True):
            api_key_revoke(account=acme, actor=ACTOR, key=key)
            api_key_revoke(account=acme, actor=ACTOR, key=key)  # a no-op: no second event

        payloads = _signed_and_well_formed(receiver, 3)
        assert [p["type"] for p in payloads] == ["key.created", "key.rotated", "key.revoked"]
        for payload in payloads:
            assert payload["data"]["account"] == "acme"
            assert payload["data"]["key"] == {"id": key.pk, "name": "ci", "prefix": payload["data"]["key"]["prefix"],
                                              "environment": "production", "expires_at": None}
        assert payloads[0]["data"]["key"]["prefix"] != payloads[1]["data"]["key"]["prefix"]  # the new secret's
        assert payloads[1]["data"]["old_secret_valid_until"] is not None
        assert payloads[2]["data"]["revoked_at"] is not None
        assert unsubscribed.deliveries == [] and other.deliveries == []
    assert len(receiver.deliveries) == 3
    assert set(AlertEvent.objects.values_list("account__slug", flat=True)) == {"acme"}


@pytest.mark.django_db
def test_key_expiring_fires_once_per_key_seven_days_ahead(acme, receiver, django_capture_on_commit_callbacks) -> None:
    _subscribed(acme, receiver, "key.expiring")
    now = datetime.now(UTC)
    soon, _ = api_key_create(account=acme, actor=ACTOR, name="soon", expires_at=now + timedelta(days=3))
    api_key_create(account=acme, actor=ACTOR, name="later", expires_at=now + timedelta(days=10))
    revoked, _ = api_key_create(account=acme, actor=ACTOR, name="gone", expires_at=now + timedelta(days=2))
    api_key_revoke(account=acme, actor=ACTOR, key=revoked)
    with django_capture_on_commit_callbacks(execute=True):
        [event] = keys_expiring_check(now=now)
        assert keys_expiring_check(now=now) == []
        assert keys_expiring_check(now=now + timedelta(hours=1)) == []
    [payload] = _signed_and_well_formed(receiver, 1)
    assert payload["type"] == "key.expiring"
    assert payload["data"]["key"]["name"] == "soon"
    assert payload["data"]["days_left"] == 3
    assert datetime.fromisoformat(payload["data"]["key"]["expires_at"]) == soon.expires_at
    # The "later" key is announced once it is seven days away.
    with django_capture_on_commit_callbacks(execute=True):
        assert [e.payload["data"]["key"]["name"] for e in keys_expiring_check(now=now + timedelta(days=3, hours=1))] \
            == ["later"]


@pytest.mark.django_db
def test_unsubscribed_account_stores_no_opt_in_events(acme, receiver) -> None:
    webhook_channel(acme, receiver)  # budget alerts only
    assert AlertChannel.objects.get().event_types == list(BUDGET_ALERT_TYPES)
    api_key_create(account=acme, actor=ACTOR, name="x", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert keys_expiring_check() == []
    assert AlertEvent.objects.count() == 0


def test_ten_rapid_429s_give_one_rate_limit_event(stack, receiver) -> None:
    account, key = stack.account, stack.key
    key.requests_per_minute = 1
    key.save()
    config_version_bump()
    _subscribed(account, receiver, "rate_limit.exceeded")
    with WebhookReceiver(secret=receiver.secret) as unsubscribed:
        webhook_channel(account, unsubscribed, name="budgets-only")
        statuses: list[int] = []
        # The limit is counted per clock minute: a slow machine may cross one, and get another call through.
        while statuses.count(429) < 10 and len(statuses) < 30:
            statuses.append(httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                                       headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code)
        assert statuses.count(429) == 10 and statuses[:2] == [200, 429], statuses
        _ingest_until(lambda: UsageRecord.objects.filter(denied_scope="rate_requests").count() == 10)
        [payload] = _signed_and_well_formed(receiver, 1)
        assert unsubscribed.deliveries == []
    assert payload["type"] == "rate_limit.exceeded"
    data = payload["data"]
    assert (data["account"], data["key"]["id"], data["key"]["name"]) == ("acme", key.pk, key.name)
    assert (data["limit"], data["requests_per_minute"], data["window_seconds"]) == ("rate_requests", 1, 60)
    assert AlertEvent.objects.filter(type="rate_limit.exceeded").count() == 1


def test_budget_denials_give_one_event_per_budget_and_period(stack, receiver) -> None:
    account = stack.account
    budget = Budget.objects.create(account=account, scope="account", period="hour", limit_usd=Decimal("0.000001"),
                                   hard=True)
    _subscribed(account, receiver, "budget.denied")
    statuses = [httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code for _ in range(5)]
    assert statuses == [429] * 5
    _ingest_until(lambda: UsageRecord.objects.filter(denied_scope="account_budget").count() == 5)
    [payload] = _signed_and_well_formed(receiver, 1)
    assert payload["type"] == "budget.denied"
    data = payload["data"]
    assert data["budget"] == {"id": budget.pk, "scope": "account", "match": "", "period": "hour",
                              "limit_usd": "0.000001", "hard": True}
    start, end = period_bounds("hour", "UTC", datetime.fromisoformat(data["denied_at"]))
    assert (data["period_start"], data["period_end"]) == (start.isoformat(), end.isoformat())
    # The ledger's records of later denials in the same hour fire nothing; the next hour's first one does.
    denial = {"account_id": account.pk, "key_id": stack.key.pk, "denied_scope": "account_budget", "tenant": "",
              "feature": "", "reserved_usd": "0.0001"}
    assert denial_events_fire(events=[{**denial, "created_at": start.timestamp() + 1}]) == []
    [next_hour] = denial_events_fire(events=[{**denial, "created_at": end.timestamp() + 1},
                                             {**denial, "created_at": end.timestamp() + 2}])
    assert next_hour.payload["data"]["period_start"] == end.isoformat()


@pytest.mark.django_db
def test_star_budget_denial_names_each_tenant_once(acme, receiver) -> None:
    Budget.objects.create(account=acme, scope="tenant", match="*", period="month", limit_usd=Decimal("1"), hard=True)
    _subscribed(acme, receiver, "budget.denied")
    now = datetime.now(UTC).timestamp()
    hostile = "t\r\n{a:1}" + "x" * 300
    events = [{"account_id": acme.pk, "key_id": None, "denied_scope": "tenant_budget", "tenant": tenant,
               "feature": "", "reserved_usd": "0.01", "created_at": now} for tenant in ("a", "b", "a", hostile)]
    fired = denial_events_fire(events=events)
    assert [e.payload["data"]["value"] for e in fired] == ["a", "b", hostile]
    assert all(len(e.dedupe_key) <= 300 for e in fired)


@pytest.mark.django_db
def test_plan_limit_approaching_fires_once_a_month(
    acme, globex, plans, receiver, django_capture_on_commit_callbacks
) -> None:
    acme.plan = plans["starter"]  # 1,000,000 requests a month
    acme.save()
    _subscribed(acme, receiver, "plan.limit_approaching")
    with WebhookReceiver(secret=receiver.secret) as other:
        _subscribed(globex, other, "plan.limit_approaching")
        now = datetime.now(UTC)
        start, end = period_bounds("month", "UTC", now)
        sync_redis().set(plan_counter_key(acme.pk, start), 790_000)
        with django_capture_on_commit_callbacks(execute=True):
            assert plan_request_limits_check(now=now) == []
        sync_redis().set(plan_counter_key(acme.pk, start), 810_000)
        with django_capture_on_commit_callbacks(execute=True):
            fired = plan_request_limits_check(now=now)
            assert plan_request_limits_check(now=now) == []
        assert sorted(e.type for e in fired) == ["plan.limit_approaching", "plan.request_limit"]
        [payload] = _signed_and_well_formed(receiver, 1)  # the channel is not subscribed to plan.request_limit
        assert other.deliveries == []
    assert payload["type"] == "plan.limit_approaching"
    assert payload["data"] == {"account": "acme", "threshold_percent": 80, "requests": 810_000,
                               "monthly_request_limit": 1_000_000, "plan": "starter",
                               "period_start": start.isoformat(), "period_end": end.isoformat()}
    assert AlertDelivery.objects.filter(succeeded=True).count() == 1


def test_two_workers_ingesting_rate_denials_at_once_fire_one_event(transactional_db, acme, receiver) -> None:
    from proxy.models import ApiKey

    from ..support import make_key
    from .conftest import run_together

    key: ApiKey = make_key(acme, KEY, requests_per_minute=1)
    _subscribed(acme, receiver, "rate_limit.exceeded")
    now = datetime.now(UTC).timestamp()
    denials = [{"account_id": acme.pk, "key_id": key.pk, "denied_scope": "rate_requests", "tenant": "",
                "feature": "", "reserved_usd": None, "created_at": now + i / 100} for i in range(10)]
    run_together(*(lambda part=part: denial_events_fire(events=part) for part in (denials[:5], denials[5:],
                                                                                   denials[2:7], denials)))
    assert AlertEvent.objects.filter(type="rate_limit.exceeded").count() == 1

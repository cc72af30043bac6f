"""Counters rebuilt after a Redis loss come from the rollups retention keeps (and raw records only for the
partial hours at a period's edges), so a `total` or `quarter` cap holds after old records are purged."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.budgets.counters import budget_counters_rebuild
from billing.models import Budget, UsageRecord
from billing.usage.records import usage_record_batch
from billing.usage.retention import usage_retention_purge
from proxy.periods import period_bounds
from proxy.quota import plan_counter_key
from tokonomics.redis_client import sync_redis

from ...support import make_key

# 34.7 days after the quarter began in Asia/Kolkata (31 March, 18:30 UTC) and 4.7 after the month did
# (30 April, 18:30 UTC): with 30 days of retention the quarter's first days survive only in rollups. Next
# year, so that the counters' expiry (their period's end) is still ahead.
YEAR = datetime.now(UTC).year + 1
NOW = datetime(YEAR, 5, 5, 12, 0, tzinfo=UTC)
MONTH_START = datetime(YEAR, 4, 30, 18, 30, tzinfo=UTC)
BUDGETS = [  # scope, match, period
    ("account", "", "total"), ("account", "", "quarter"), ("account", "", "month"),
    ("tenant", "*", "total"), ("tenant", "*", "quarter"), ("tenant", "vip", "quarter"), ("tenant", "*", "month"),
    ("feature", "*", "total"), ("feature", "search", "quarter"), ("feature", "*", "month"),
    ("key", "*", "total"), ("key", "ci", "quarter"), ("key", "*", "month"), ("key", "main", "month"),
]


def _spend(account, keys) -> list[dict]:
    rng = random.Random(13)
    events, at = [], NOW - timedelta(days=40)
    # Every 3 h 20 min at 40 minutes past an hour: never in the half hour before a period starts in
    # Kolkata, which shares a UTC hour with the period's first half hour.
    moments = []
    while at < NOW:
        moments.append(at.replace(minute=40, second=0))
        at += timedelta(hours=3, minutes=20)
    # The month's first half hour and the half hour before it share the hour 18:00 UTC; both are retained.
    moments += [MONTH_START - timedelta(minutes=10), MONTH_START + timedelta(minutes=15)]
    for n, moment in enumerate(moments):
        status = rng.choice([200, 200, 200, 200, 429, 400, 500]) if moment.minute == 40 else 200
        denied = "tenant_budget" if status == 429 else ""
        cost = "0" if status in (400, 429) else str(Decimal(rng.randint(1, 10**8)) / 10**9)
        events.append({
            "request_id": f"req_rebuild_{n}", "account_id": account.pk, "key_id": rng.choice([*keys, None]),
            "tenant": rng.choice(["", "globex", "vip", "initech", "a|b:c"]),
            "feature": rng.choice(["", "search", "chat"]), "provider": "openai", "model": "gpt-4o-mini",
            "status_code": status, "denied_scope": denied, "cost_usd": cost, "created_at": moment.timestamp(),
        })
    return events


def _counters(account_id: int) -> dict[str, int]:
    client = sync_redis()
    found = {k.decode(): int(client.hget(k, "s") or 0) for k in client.scan_iter(match=f"tk:{{a:{account_id}}}:b*")}
    return {k: v for k, v in found.items() if v}


def _account_with_spend(acme, retention_days: int) -> list[dict]:
    acme.timezone, acme.retention_days = "Asia/Kolkata", retention_days
    acme.save()
    keys = [make_key(acme, "mk_test_rebuild_main_0123456789abcdefghij", name="main").pk,
            make_key(acme, "mk_test_rebuild_ci_0123456789abcdefghijkl", name="ci").pk]
    for scope, match, period in BUDGETS:
        Budget.objects.create(account=acme, scope=scope, match=match, period=period, limit_usd=Decimal(1000),
                              hard=True)
    events = _spend(acme, keys)
    usage_record_batch(events=events)
    assert period_bounds("month", acme.timezone, NOW)[0] == MONTH_START
    return events


@pytest.mark.django_db
def test_counters_rebuilt_after_retention_and_a_redis_loss_equal_the_ones_before(acme) -> None:
    _account_with_spend(acme, 30)
    budget_counters_rebuild(account_id=acme.pk, now=NOW)  # from every record: the truth
    before = _counters(acme.pk)
    plan_before = int(sync_redis().get(plan_counter_key(acme.pk, MONTH_START)))
    assert len(before) > len(BUDGETS) and plan_before > 0

    purged = usage_retention_purge(now=NOW)
    assert purged["acme"] > 0
    assert UsageRecord.objects.filter(account=acme, created_at__lt=NOW - timedelta(days=30)).count() == 0
    sync_redis().flushdb()  # Redis lost its data

    budget_counters_rebuild(account_id=acme.pk, now=NOW)
    assert _counters(acme.pk) == before
    assert int(sync_redis().get(plan_counter_key(acme.pk, MONTH_START))) == plan_before


@pytest.mark.django_db
def test_a_retention_shorter_than_the_period_errs_safe_for_caps_and_for_the_plan(acme) -> None:
    events = _account_with_spend(acme, 30)
    budget_counters_rebuild(account_id=acme.pk, now=NOW)
    before = _counters(acme.pk)
    acme.retention_days = 2
    acme.save()
    usage_retention_purge(now=NOW)  # the month's first half hour (30 April, 18:30 UTC) is gone too
    sync_redis().flushdb()

    budget_counters_rebuild(account_id=acme.pk, now=NOW)
    after = _counters(acme.pk)
    # Caps: the month's first partial hour is read from its rollup hour whole, which also holds 18:20, of
    # the month before: a month counter may count more than was spent, never less.
    assert set(after) == set(before)
    assert all(after[k] >= v for k, v in before.items())
    assert sum(after.values()) > sum(before.values())
    # The plan: whole hours from the rollups, 429s left out, the deleted partial hour too.
    first_whole_hour = (MONTH_START + timedelta(minutes=30)).timestamp()
    admitted = [e for e in events if first_whole_hour <= e["created_at"] < NOW.timestamp()
                and e["status_code"] not in (400, 429)]
    assert int(sync_redis().get(plan_counter_key(acme.pk, MONTH_START))) == len(admitted)

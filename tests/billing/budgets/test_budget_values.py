"""Readers of '*' budget counters (dashboard, forecasts) show the tenant or feature a counter key holds
encoded as the client sent it, found through the value index the settle script keeps."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from alerts.evaluate import budget_forecasts_check
from billing.budgets.counters import budget_counters_rebuild
from billing.dashboard.selectors import budget_status
from billing.models import Budget
from billing.usage.ledger import usage_record_batch
from proxy.budgets import BudgetEntry, BudgetPeriod, budget_counter_key
from proxy.directory import AccountEntry, KeyEntry
from proxy.periods import period_bounds
from proxy.quota import Quota, Reservation, Unseeded, seeded_marker_key
from proxy.redis_pipeline import PipelinedRedis
from tokonomics.redis_client import sync_redis

TENANTS = ["team:a|b{x}", "%7C", "#1", "ümlaut\nnew line", "x" * 500]


def settle(account, budget: Budget, spend: dict[str, int], now: datetime) -> None:
    """Settle `spend` (tenant: nano-dollars) with the proxy's own Quota and settle script."""
    entry = AccountEntry(id=account.pk, timezone=account.timezone, monthly_request_limit=0,
                         on_redis_unavailable="default", allow_unmetered_routes=False, endpoints={},
                         budgets=(BudgetEntry.of(budget),), prices={})
    key = KeyEntry(id=1, account_id=account.pk, name="main", environment="", allowed_patterns=(), expires_at=None,
                   revoked=False, requests_per_minute=0, tokens_per_minute=0, max_concurrent=0)

    async def main() -> None:
        quota = Quota(PipelinedRedis(settings.REDIS_URL, timeout=5), reservation_ttl_ms=60_000)
        try:
            for n, (tenant, nanos) in enumerate(spend.items()):
                counters = quota.counters_for(entry, key, feature="", tenant=tenant, now=now.timestamp())
                held = Reservation(f"r{n}", account.pk, key.id, counters, 0, 0, held=False)
                await quota.settle(reservation=held, actual_nanos=nanos, actual_tokens=0, event=b"")
        finally:
            await quota.redis.close()

    asyncio.run(main())


@pytest.mark.django_db
def test_dashboard_and_forecasts_name_each_tenant_as_sent(acme) -> None:
    budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="day", limit_usd=Decimal(10),
                                   alert_at=[100])
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) + timedelta(days=1)  # still live
    settle(acme, budget, {tenant: (n + 6) * 10**9 for n, tenant in enumerate(TENANTS)}, now)

    shown = {row["value"]: row["spent_usd"] for row in budget_status(acme, now=now)}
    assert {value: shown[value] for value in TENANTS[:4]} == {t: Decimal(n + 6) for n, t in enumerate(TENANTS[:4])}
    [hashed] = set(shown) - set(TENANTS)  # too long to keep in a key: shown as its hash
    assert hashed.startswith("#") and shown[hashed] == Decimal(10)
    # The biggest spenders first, as many as asked for.
    assert [row["spent_usd"] for row in budget_status(acme, now=now, top=2)] == [Decimal(10), Decimal(9)]

    warned = {event.payload["data"]["value"] for event in budget_forecasts_check(now=now)}
    assert warned == set(TENANTS[:4])  # the hashed one has spent 10 of 10: past forecasting


@pytest.mark.django_db
def test_the_dashboard_reads_the_biggest_spenders_from_an_index_that_expires_with_its_counters(acme) -> None:
    budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="hour", limit_usd=Decimal(1000))
    now = datetime.now(UTC)
    spend = {f"tenant-{n:03}": (n * 7919 % 300 + 1) * 10**6 for n in range(300)}
    settle(acme, budget, spend, now)

    rows = budget_status(acme, now=now)
    biggest = sorted(spend.items(), key=lambda item: -item[1])[:5]
    assert [(row["value"], row["spent_usd"]) for row in rows] == [(t, Decimal(n) / 10**9) for t, n in biggest]

    client = sync_redis()
    period = BudgetPeriod.of(acme.pk, budget.pk, period_bounds("hour", acme.timezone, now)[0])
    assert client.zcard(period.values_key) == len(spend)
    counter_expiry = {client.expiretime(period.counter_key(t)) for t in spend}
    assert counter_expiry == {client.expiretime(period.values_key)} and counter_expiry != {-1}


def _fingerprint_before_the_index(timezone_name: str, budgets: list[Budget]) -> str:
    """budget_layout_fingerprint as the release before the value indexes computed it."""
    layout = repr((2, timezone_name, sorted((b.id, b.scope, b.match, b.period) for b in budgets)))
    return hashlib.blake2b(layout.encode(), digest_size=8).hexdigest()


@pytest.mark.django_db
def test_counters_kept_before_the_value_index_are_listed_after_the_reseed_it_triggers(acme) -> None:
    budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="month", limit_usd=Decimal(100))
    now = datetime.now(UTC)
    usage_record_batch(events=[{
        "request_id": "req_before_index", "account_id": acme.pk, "key_id": None, "tenant": "globex", "feature": "",
        "provider": "openai", "model": "gpt-4o-mini", "status_code": 200, "cost_usd": "2",
        "created_at": now.timestamp() - 1,
    }])
    # What the previous release left: the counter (with a call not ingested yet), its layout marked seeded.
    client = sync_redis()
    start, _ = period_bounds("month", acme.timezone, now)
    client.hset(budget_counter_key(acme.pk, budget.pk, start, "globex"), "s", 3 * 10**9)
    client.sadd(seeded_marker_key(acme.pk), _fingerprint_before_the_index(acme.timezone, [budget]))
    assert [row["value"] for row in budget_status(acme, now=now)] == [""]  # in no index yet

    quota = Quota(PipelinedRedis(settings.REDIS_URL, timeout=5), reservation_ttl_ms=60_000)
    entry = AccountEntry(id=acme.pk, timezone=acme.timezone, monthly_request_limit=0,
                         on_redis_unavailable="default", allow_unmetered_routes=False, endpoints={},
                         budgets=(BudgetEntry.of(budget),), prices={})
    key = KeyEntry(id=1, account_id=acme.pk, name="main", environment="", allowed_patterns=(), expires_at=None,
                   revoked=False, requests_per_minute=0, tokens_per_minute=0, max_concurrent=0)

    async def reserve() -> object:
        try:
            plan = quota.plan_for(entry, key, feature="", tenant="initech", now=now.timestamp())
            return await quota.reserve(rid="r-index", plan=plan, estimate_nanos=1, estimated_tokens=1)
        finally:
            await quota.redis.close()

    with pytest.raises(Unseeded):  # the layout is re-seeded before its counters are used again
        asyncio.run(reserve())
    budget_counters_rebuild(account_id=acme.pk, now=now)
    assert [(row["value"], row["spent_usd"]) for row in budget_status(acme, now=now)] == [("globex", Decimal(3))]

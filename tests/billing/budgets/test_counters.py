"""Budget counters rebuilt from the usage records equal the live ones the proxy kept in Redis."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from django.conf import settings as django_settings

from billing.budgets.counters import budget_counters_rebuild, budget_layout_of, budget_spend_by_counter
from billing.models import Budget, PriceOverride, UsageRecord
from billing.tasks import budget_counters_rebuild_task
from billing.usage.ledger import usage_ingest, usage_record_batch
from proxy.directory import BudgetEntry
from proxy.periods import period_bounds
from proxy.quota import Denial, Quota, Unseeded, seeded_marker_key
from proxy.redis_pipeline import PipelinedRedis
from tokonomics.redis_client import sync_redis

from ...support import KEY, OTHER_KEY, Stack, account_entry, key_entry, make_key

TRAFFIC = [  # (key, tenant, feature, extra headers)
    (KEY, "globex", "search", {}),
    (KEY, "globex", "chat", {"X-Sim-Words": "3"}),
    (KEY, "vip", "search", {}),
    (KEY, "", "search", {"X-Sim-Reasoning-Tokens": "9"}),
    (KEY, "initech", "", {}),
    (OTHER_KEY, "globex", "search", {}),
    (OTHER_KEY, "", "", {}),
    (KEY, "globex", "search", {"X-Sim-Status": "500"}),
]


def budgets(stack: Stack) -> list[Budget]:
    fields = [
        ("account", "", "month", "100", True),
        ("tenant", "*", "day", "100", True),
        ("tenant", "vip", "day", "100", True),
        ("feature", "*", "week", "100", False),
        ("key", "*", "month", "100", False),
        ("key", "ci", "month", "100", True),
        ("tenant", "*", "total", "100", False),
    ]
    return [Budget.objects.create(account=stack.account, scope=scope, match=match, period=period,
                                  limit_usd=Decimal(limit), hard=hard)
            for scope, match, period, limit, hard in fields]


async def run_traffic(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        calls = []
        for key, tenant, feature, extra in TRAFFIC * 3:
            headers = {"Authorization": f"Bearer {key}", **extra}
            headers.update({name: value for name, value in (("X-Tenant-ID", tenant), ("X-Feature-Name", feature))
                            if value})
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me " * 7}],
                    "max_tokens": 12, "stream": len(calls) % 2 == 0}
            calls.append(client.post(f"{stack.proxy}/proxy/openai/chat/completions", json=body, headers=headers))
        assert {r.status_code for r in await asyncio.gather(*calls)} == {200, 500}


def live_settled(keys: list[str]) -> dict[str, int]:
    client = sync_redis()
    deadline = time.monotonic() + 3
    while any(int(client.hget(k, "r") or 0) for k in keys) and time.monotonic() < deadline:
        time.sleep(0.02)  # the last settles follow their responses
    return {k: int(client.hget(k, "s") or 0) for k in keys}


def test_counters_rebuilt_from_records_equal_the_live_ones(stack: Stack) -> None:
    PriceOverride.objects.create(account=stack.account, provider="openai", model="gpt-4o-mini",
                                 input_per_mtok=Decimal("1.5"), output_per_mtok=Decimal("7"))
    make_key(stack.account, OTHER_KEY, name="ci")
    budgets(stack)
    asyncio.run(run_traffic(stack))
    live_keys = [k.decode() for k in sync_redis().scan_iter(match=f"tk:{{a:{stack.account.pk}}}:b2:*")]
    live = live_settled(live_keys)
    usage_ingest(max_seconds=2)
    assert UsageRecord.objects.count() == len(TRAFFIC) * 3

    rebuilt = {key: nanos for key, (nanos, _) in budget_spend_by_counter(account_id=stack.account.pk).items()}
    assert rebuilt == live
    # account; tenant * day (globex, initech: vip has its own); vip; feature * (search, chat); key *
    # (main: ci has its own); ci; tenant * total (globex, vip, initech)
    assert len(live) == 1 + 2 + 1 + 2 + 1 + 1 + 3
    assert sum(rebuilt.values()) > 0


def test_a_rebuild_raises_counters_never_lowers_them_and_marks_the_layout_seeded(stack: Stack) -> None:
    PriceOverride.objects.create(account=stack.account, provider="openai", model="gpt-4o-mini",
                                 input_per_mtok=Decimal("1.5"), output_per_mtok=Decimal("7"))
    make_key(stack.account, OTHER_KEY, name="ci")
    created = budgets(stack)
    asyncio.run(run_traffic(stack))
    live_settled([k.decode() for k in sync_redis().scan_iter(match=f"tk:{{a:{stack.account.pk}}}:b2:*")])
    usage_ingest(max_seconds=2)
    expected = {key: nanos for key, (nanos, _) in budget_spend_by_counter(account_id=stack.account.pk).items()}
    client = sync_redis()
    total_prefix = f"tk:{{a:{stack.account.pk}}}:b2:{created[-1].pk}:0:"
    lost, ahead = sorted(k for k in expected if not k.startswith(total_prefix))[:2]
    client.delete(lost)  # as after a Redis loss
    client.hincrby(ahead, "s", 777)  # a live counter also holds calls not ingested yet
    client.delete(seeded_marker_key(stack.account.pk))

    result = budget_counters_rebuild(account_id=stack.account.pk)
    assert result == {**expected, ahead: expected[ahead] + 777}
    assert int(client.hget(lost, "s")) == expected[lost]
    assert client.ttl(lost) > 0
    assert all(client.ttl(k) == -1 for k in expected if k.startswith(total_prefix))  # `total` never expires
    layout = budget_layout_of(Budget.objects.filter(account=stack.account), stack.account.timezone)
    assert client.sismember(seeded_marker_key(stack.account.pk), layout)


def test_the_plan_request_counter_is_rebuilt_too(stack: Stack) -> None:
    plan = stack.account.plan
    plan.monthly_request_limit = 1000
    plan.save()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    for _ in range(3):
        assert httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    deadline = time.monotonic() + 5
    while usage_ingest(max_seconds=0.2) < 3 and UsageRecord.objects.count() < 3:
        assert time.monotonic() < deadline  # the last event leaves with the settle, just after its response
        time.sleep(0.02)
    client = sync_redis()
    (plan_key,) = [k for k in client.scan_iter(match=f"tk:{{a:{stack.account.pk}}}:plan:*")]
    assert int(client.get(plan_key)) == 3
    client.delete(plan_key)
    assert budget_counters_rebuild_task(stack.account.pk) == 1
    assert int(client.get(plan_key)) == 3 and client.ttl(plan_key) > 0


def _previous_release_fingerprint(timezone_name: str, budgets: list[Budget]) -> str:
    """budget_layout_fingerprint as the release before key format 2 computed it."""
    layout = repr((timezone_name, sorted((b.id, b.scope, b.match, b.period) for b in budgets)))
    return hashlib.blake2b(layout.encode(), digest_size=8).hexdigest()


def test_counters_of_the_previous_key_format_are_reseeded_not_read_as_empty(acme) -> None:
    key = make_key(acme, KEY)
    budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="month", limit_usd=Decimal(1),
                                   hard=True)
    now = datetime.now(UTC)
    usage_record_batch(events=[{
        "request_id": "req_upgrade_1", "account_id": acme.pk, "key_id": key.pk, "tenant": "team:a|b", "feature": "",
        "provider": "openai", "model": "gpt-4o-mini", "status_code": 200, "cost_usd": "1",
        "created_at": now.timestamp() - 1,
    }])
    # What the previous release left in Redis: the tenant's counter at its cap, under the raw value, and
    # its layout marked seeded.
    start, _ = period_bounds("month", acme.timezone, now)
    client = sync_redis()
    client.hset(f"tk:{{a:{acme.pk}}}:b:{budget.pk}:{int(start.timestamp())}:team:a|b", "s", 10**9)
    client.sadd(seeded_marker_key(acme.pk), _previous_release_fingerprint(acme.timezone, [budget]))

    entry = account_entry(acme.pk, timezone=acme.timezone,
                          budgets=(BudgetEntry(budget.pk, "tenant", "*", "month", 10**9, True),))
    key_seen = key_entry(key.pk, account_id=acme.pk, name=key.name)

    async def reserve() -> object:
        quota = Quota(PipelinedRedis(django_settings.REDIS_URL, timeout=10), reservation_ttl_ms=60_000)
        try:
            plan = quota.plan_for(entry, key_seen, feature="", tenant="team:a|b", now=time.time())
            return await quota.reserve(rid="r-upgrade", plan=plan, estimate_nanos=1, estimated_tokens=1)
        finally:
            await quota.redis.close()

    with pytest.raises(Unseeded):  # the new counter is not trusted as zero
        asyncio.run(reserve())
    budget_counters_rebuild(account_id=acme.pk)
    verdict = asyncio.run(reserve())
    assert isinstance(verdict, Denial) and verdict.scope == "tenant_budget"

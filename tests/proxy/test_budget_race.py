"""Budgets under concurrency: however many calls and proxy processes race, a hard budget admits
exactly what fits (estimates here equal actual costs), and concurrent settles add up exactly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as Tally
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis

from billing.models import Budget, PriceOverride
from proxy import context as proxy_context
from proxy.directory import AccountEntry, BudgetEntry
from proxy.quota import Denial, Quota, Reservation, seeded_marker_key
from proxy.redis_pipeline import PipelinedRedis
from tokonomics.redis_client import sync_redis

from ..support import KEY, ProxyProcess, Stack, account_entry, key_entry

# Input is free and output costs $1000 per million tokens, so a call answering max_tokens=10 costs
# exactly $0.01 and its estimate (10 output tokens) is exact.
CALL_COST = Decimal("0.01")
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "race"}], "max_tokens": 10}
FITS = 37
CONCURRENT = 200


@pytest.fixture
def patient_redis_client(settings) -> None:
    """Before `stack`, so its proxy starts with it: on this 2-core box a 200-call burst opening its
    Redis connections all at once can exceed the 0.25 s connect timeout, which would turn into 503s
    (enforcement unavailable). Outages are tests/proxy/test_redis_outage.py's subject, not this one's."""
    settings.TOKONOMICS_REDIS_TIMEOUT = 3.0


def exact_prices(stack: Stack) -> None:
    PriceOverride.objects.create(account=stack.account, provider="openai", model="gpt-4o-mini",
                                 input_per_mtok=Decimal(0), output_per_mtok=Decimal(1000))


def account_budget(stack: Stack, limit_usd: Decimal) -> Budget:
    return Budget.objects.create(account=stack.account, scope="account", match="", period="month",
                                 limit_usd=limit_usd, hard=True)


async def burst(proxies: list[str], count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        calls = [
            client.post(f"{proxies[i % len(proxies)]}/proxy/openai/chat/completions", json=BODY,
                        headers={"Authorization": f"Bearer {KEY}"})
            for i in range(count)
        ]
        return await asyncio.gather(*calls)


def counter_fields(budget: Budget) -> dict[str, int]:
    keys = list(sync_redis().scan_iter(match=f"tk:{{a:{budget.account_id}}}:b2:{budget.pk}:*"))
    assert len(keys) == 1
    return {k.decode(): int(v) for k, v in sync_redis().hgetall(keys[0]).items()}


def settled_fields(budget: Budget, settled: int) -> dict[str, int]:
    """The counter once every call settled: leased calls settle in their worker's next batch (100 ms)."""
    deadline = time.monotonic() + 5
    while (fields := counter_fields(budget)) != {"s": settled, "r": 0} and time.monotonic() < deadline:
        time.sleep(0.05)
    return fields


def assert_exactly_fits(responses: list[httpx.Response], budget: Budget) -> None:
    statuses = Tally(r.status_code for r in responses)
    assert statuses == {200: FITS, 429: CONCURRENT - FITS}
    denied = next(r for r in responses if r.status_code == 429)
    assert denied.json()["error"]["code"] == "account_budget"
    assert all(Decimal(r.headers["x-tokonomics-cost-usd"]) == CALL_COST for r in responses if r.status_code == 200)
    settled = int(FITS * CALL_COST * 10**9)
    assert settled_fields(budget, settled) == {"s": settled, "r": 0}


@pytest.fixture(params=[1, 2, 4], ids=lambda n: f"{n}-processes")
def proxies(request: pytest.FixtureRequest, patient_redis_client: None, leases_on: None,
            stack: Stack) -> Iterator[list[str]]:
    """The stack's proxy and proxy workers of their own, the kind production scales out, budget leases on
    (the default): they must enforce exactly as one does."""
    assert settings.TOKONOMICS_LEASE_FRACTION > 0
    in_process = proxy_context._context
    assert in_process is not None and in_process.quota.leases is not None, "the stack's proxy started before leases_on"
    with contextlib.ExitStack() as started:
        extra = [started.enter_context(ProxyProcess("tokonomics.proxy_asgi:application")).url
                 for _ in range(request.param - 1)]
        yield [stack.proxy, *extra]


def test_proxy_processes_sharing_redis_admit_exactly_what_fits(
    patient_redis_client: None, leases_on: None, stack: Stack, proxies: list[str]
) -> None:
    """The settings' fixtures come first: pytest sets fixtures up in the order a test names them, and the
    stack's in-process proxy reads the Redis timeout and the lease fraction when it starts."""
    exact_prices(stack)
    budget = account_budget(stack, FITS * CALL_COST)
    responses = asyncio.run(burst(proxies, CONCURRENT))
    assert_exactly_fits(responses, budget)


CAP_CALLS = 600
WAVE = 60


def test_four_leasing_processes_never_admit_past_the_cap_from_zero_to_full(
    patient_redis_client: None, leases_on: None, stack: Stack
) -> None:
    """Spend driven from nothing to the cap in waves across four processes with leases on: after every
    wave what was admitted fits under the cap, leases were used on the way, and the cap is reached."""
    exact_prices(stack)
    budget = account_budget(stack, CAP_CALLS * CALL_COST)
    lease_hash = f"tk:{{a:{budget.account_id}}}:lease"
    admitted = 0
    leases_seen = 0
    with contextlib.ExitStack() as started:
        proxies = [stack.proxy, *(started.enter_context(ProxyProcess("tokonomics.proxy_asgi:application")).url
                                  for _ in range(3))]
        for _ in range(2 * CAP_CALLS // WAVE):
            responses = asyncio.run(burst(proxies, WAVE))
            statuses = Tally(r.status_code for r in responses)
            assert set(statuses) <= {200, 429}
            admitted += statuses[200]
            assert admitted <= CAP_CALLS
            fields = counter_fields(budget)
            assert fields.get("s", 0) + fields.get("r", 0) <= CAP_CALLS * CALL_COST * 10**9
            leases_seen += int(sync_redis().hlen(lease_hash) > 0)
            if admitted == CAP_CALLS:
                break
            time.sleep(0.15)  # a batch: the workers resize their leases from the wave's spend
    assert admitted == CAP_CALLS
    assert leases_seen > 0
    settled = int(CAP_CALLS * CALL_COST * 10**9)
    assert settled_fields(budget, settled) == {"s": settled, "r": 0}


# --- the scripts alone, driven directly -------------------------------------------------------

ACCOUNT_ID, KEY_ID = 424242, 7


def race_account(*budgets: BudgetEntry) -> AccountEntry:
    return account_entry(ACCOUNT_ID, budgets=budgets)


KEY_ENTRY = key_entry(KEY_ID, account_id=ACCOUNT_ID)


def redis_client() -> Redis:
    return Redis(connection_pool=BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=64, timeout=30))


async def reserve_many(quota: Quota, account: AccountEntry, count: int, estimate: int) -> list[Reservation | Denial]:
    now = time.time()
    plan = quota.plan_for(account, KEY_ENTRY, feature="", tenant="", now=now)
    return await asyncio.gather(*(
        quota.reserve(rid=f"r{i}", plan=plan, estimate_nanos=estimate, estimated_tokens=10)
        for i in range(count)
    ))


def test_concurrent_reservations_never_overshoot_the_cap() -> None:
    # A soft budget is reserved too, but only the hard one denies.
    account = race_account(BudgetEntry(1, "account", "", "day", 1_000_000, True),
                            BudgetEntry(2, "account", "", "month", 10, False))

    async def run() -> None:
        redis = redis_client()
        quota = Quota(PipelinedRedis(settings.REDIS_URL, timeout=30), reservation_ttl_ms=60_000)
        await redis.sadd(seeded_marker_key(ACCOUNT_ID), quota.fingerprint(account))
        verdicts = await reserve_many(quota, account, 500, 3_000)
        admitted = [v for v in verdicts if isinstance(v, Reservation)]
        assert len(admitted) == 1_000_000 // 3_000
        assert {v.scope for v in verdicts if isinstance(v, Denial)} == {"account_budget"}
        for counter in admitted[0].counters:
            assert int(await redis.hget(counter.key, "r")) == len(admitted) * 3_000
        await redis.aclose()
        await quota.redis.close()

    asyncio.run(run())


def test_ten_thousand_concurrent_settles_add_up_exactly() -> None:
    account = race_account(BudgetEntry(1, "account", "", "month", 10**15, True))
    count, estimate, actual = 10_000, 5_000, 1_234_567

    async def run() -> None:
        redis = redis_client()
        quota = Quota(PipelinedRedis(settings.REDIS_URL, timeout=30), reservation_ttl_ms=60_000)
        await redis.sadd(seeded_marker_key(ACCOUNT_ID), quota.fingerprint(account))
        reservations = await reserve_many(quota, account, count, estimate)
        assert all(isinstance(r, Reservation) for r in reservations)
        await asyncio.gather(*(
            quota.settle(reservation=r, actual_nanos=actual, actual_tokens=10, event=b"{}")
            for r in reservations if isinstance(r, Reservation)
        ))
        counter = reservations[0].counters[0].key
        assert {k: int(v) for k, v in (await redis.hgetall(counter)).items()} == {b"s": count * actual, b"r": 0}
        assert await redis.hlen(f"tk:{{a:{ACCOUNT_ID}}}:rsv") == 0
        await redis.aclose()
        await quota.redis.close()

    asyncio.run(run())

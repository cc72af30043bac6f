"""The budget scripts at the edges of their numbers: a reservation of nothing (an unpriced model) and one far
past what a Lua number prints exactly, reserved, settled and expired against real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.conf import settings
from redis.asyncio import Redis

from proxy.budgets import account_prefix
from proxy.directory import BudgetEntry
from proxy.quota import MAX_CALL_NANOS, MAX_CALL_TOKENS, Quota, Reservation, seeded_marker_key
from proxy.redis_pipeline import PipelinedRedis

from ..support import account_entry, key_entry

SOFT = BudgetEntry(id=1, scope="account", match="", period="month", limit_nanos=10**18, hard=False)
ACCOUNT = account_entry(626262, budgets=(SOFT,))
KEY = key_entry(4, account_id=ACCOUNT.id, tokens_per_minute=10**15)


def run(check) -> None:
    async def main() -> None:
        redis = Redis.from_url(settings.REDIS_URL)
        pipeline = PipelinedRedis(settings.REDIS_URL, timeout=5)
        try:
            quota = Quota(pipeline, reservation_ttl_ms=60_000)
            await redis.sadd(seeded_marker_key(ACCOUNT.id), quota.fingerprint(ACCOUNT))  # as a reseed leaves it
            await check(redis, quota)
        finally:
            await redis.aclose()
            await pipeline.close()

    asyncio.run(main())


async def _reserve(quota: Quota, rid: str, nanos: int, tokens: int) -> Reservation:
    plan = quota.plan_for(ACCOUNT, KEY, feature="", tenant="", now=time.time())
    verdict = await quota.reserve(rid=rid, plan=plan, estimate_nanos=nanos, estimated_tokens=tokens)
    assert isinstance(verdict, Reservation)
    return verdict


async def _counter(redis: Redis, reservation: Reservation) -> dict[bytes, int]:
    return {k: int(v) for k, v in (await redis.hgetall(reservation.counters[0].key)).items()}


@pytest.mark.parametrize("nanos", [0, 10**14 + 7, 2 * 10**15])
def test_a_reservation_of_any_size_settles(nanos: int) -> None:
    async def check(redis: Redis, quota: Quota) -> None:
        held = await _reserve(quota, "r1", nanos, 10**13)
        expected = min(nanos, MAX_CALL_NANOS)
        assert await _counter(redis, held) == {b"r": expected}
        await quota.settle(reservation=held, actual_nanos=nanos, actual_tokens=10**13, event=b"")
        assert await _counter(redis, held) == {b"r": 0, b"s": expected}
        assert int(await redis.get(f"{account_prefix(ACCOUNT.id)}:k:{KEY.id}:tpm:sum")) == MAX_CALL_TOKENS

    run(check)


@pytest.mark.parametrize("nanos", [0, 10**14 + 7])
def test_an_expired_reservation_of_any_size_is_given_back(nanos: int) -> None:
    async def check(redis: Redis, quota: Quota) -> None:
        held = await _reserve(quota, "r1", nanos, 10)
        await redis.zadd(f"{account_prefix(ACCOUNT.id)}:rsvz", {"r1": 0}, xx=True)  # its process died long ago
        await _reserve(quota, "r2", 5, 10)  # gives back what r1 held
        assert await _counter(redis, held) == {b"r": 5}

    run(check)

"""Redis-down handling behind the Quota (CONTRACT §2): no caller sees a Redis error. A call Redis cannot
decide gets no verdict (the account's policy then applies), a settle that cannot reach Redis is kept to
replay and its usage event to send later, and counters Redis lacks are seeded once for every call that
finds them missing."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from django.conf import settings
from redis.asyncio import Redis

from proxy.directory import AccountEntry, BudgetEntry, KeyEntry
from proxy.quota import Quota, Reservation, events_stream_key, seeded_marker_key
from proxy.redis_pipeline import PipelinedRedis

HARD = BudgetEntry(id=1, scope="account", match="", period="month", limit_nanos=10**12, hard=True)
ACCOUNT = AccountEntry(id=737373, timezone="UTC", monthly_request_limit=0, on_redis_unavailable="default",
                       allow_unmetered_routes=False, endpoints={}, budgets=(HARD,), prices={})
KEY = KeyEntry(id=9, account_id=ACCOUNT.id, name="main", environment="", allowed_patterns=(), expires_at=None,
               revoked=False, requests_per_minute=0, tokens_per_minute=0, max_concurrent=0)
NOBODY_LISTENS = "redis://127.0.0.1:1/0"


def run(url: str, check: Callable[[Quota], Awaitable[None]], **options: object) -> None:
    async def main() -> None:
        pipeline = PipelinedRedis(url, timeout=0.5)
        try:
            await check(Quota(pipeline, reservation_ttl_ms=60_000, **options))
        finally:
            await pipeline.close()

    asyncio.run(main())


async def admit(quota: Quota, rid: str) -> Reservation | object:
    plan = quota.plan_for(ACCOUNT, KEY, feature="", tenant="", now=time.time())
    return await quota.admit(rid=rid, plan=plan, estimate_nanos=10, estimated_tokens=1)


def test_redis_down_gives_no_verdict_and_opens_the_breaker_after_a_few_failures() -> None:
    async def check(quota: Quota) -> None:
        for attempt in range(quota.breaker.failures_to_open):
            assert not quota.breaker.is_open
            assert await admit(quota, f"r{attempt}") is None
        assert quota.breaker.is_open
        assert await admit(quota, "skipped") is None  # no round trip while the breaker is open
        assert quota.breaker.failures == quota.breaker.failures_to_open

    run(NOBODY_LISTENS, check)


def test_a_settle_and_an_event_redis_cannot_take_are_kept() -> None:
    async def check(quota: Quota) -> None:
        reservation = Reservation("r1", ACCOUNT.id, KEY.id, [], 10, 1)
        await quota.settle_or_defer(reservation=reservation, actual_nanos=7, actual_tokens=1, event=b"{}")
        await quota.record(account_id=ACCOUNT.id, event=b'{"denied": 1}')
        assert list(quota.deferred) == [(reservation, 7, 1)]
        assert list(quota.pending_events) == [(ACCOUNT.id, b"{}"), (ACCOUNT.id, b'{"denied": 1}')]
        assert quota.breaker.failures == 2

    run(NOBODY_LISTENS, check)


def test_kept_events_are_sent_once_redis_answers() -> None:
    async def check(quota: Quota) -> None:
        redis = Redis.from_url(settings.REDIS_URL)
        try:
            stream = events_stream_key(ACCOUNT.id)
            await redis.delete(stream)
            await quota.pending_flush()
            assert not quota.pending_events
            assert [fields[b"e"] for _, fields in await redis.xrange(stream)] == [b"one", b"two"]
        finally:
            await redis.aclose()

    run(settings.REDIS_URL, check, pending_events=deque([(ACCOUNT.id, b"one"), (ACCOUNT.id, b"two")]))


def test_missing_counters_are_seeded_once_for_every_call_that_finds_them_missing() -> None:
    seeds: list[tuple[int, str]] = []

    async def seed(account_id: int, fingerprint: str) -> None:
        seeds.append((account_id, fingerprint))
        await asyncio.sleep(0.05)  # long enough for every call below to find the seed under way
        redis = Redis.from_url(settings.REDIS_URL)
        try:
            await redis.sadd(seeded_marker_key(account_id), fingerprint)
        finally:
            await redis.aclose()

    async def check(quota: Quota) -> None:
        redis = Redis.from_url(settings.REDIS_URL)
        try:
            await redis.delete(seeded_marker_key(ACCOUNT.id))
        finally:
            await redis.aclose()
        verdicts = await asyncio.gather(*(admit(quota, f"s{i}") for i in range(5)))
        assert all(isinstance(v, Reservation) for v in verdicts)
        assert seeds == [(ACCOUNT.id, quota.fingerprint(ACCOUNT))]

    run(settings.REDIS_URL, check, counters_seed=seed)


def test_without_a_way_to_seed_unseeded_counters_give_no_verdict() -> None:
    async def check(quota: Quota) -> None:
        redis = Redis.from_url(settings.REDIS_URL)
        try:
            await redis.delete(seeded_marker_key(ACCOUNT.id))
        finally:
            await redis.aclose()
        assert await admit(quota, "n1") is None
        assert quota.breaker.failures == 0  # Redis answered: not an outage

    run(settings.REDIS_URL, check)

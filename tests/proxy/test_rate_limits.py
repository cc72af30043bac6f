"""Per-key rate limits, checked in the same Redis round trip as budgets: requests and tokens per
minute over a sliding window, and concurrent calls (released when a client goes away)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import openai
import pytest
from django.conf import settings
from redis.asyncio import Redis

from proxy.directory import KeyEntry
from proxy.quota import Denial, Quota, Reservation
from proxy.redis_pipeline import PipelinedRedis

from ..support import CHAT, KEY, Stack, account_entry, chat, key_entry

ACCOUNT = account_entry(515151)
KEY_ENTRY = key_entry(3, account_id=ACCOUNT.id)
PREFIX = f"tk:{{a:{ACCOUNT.id}}}:k:{KEY_ENTRY.id}"


def test_requests_per_minute_over_the_live_proxy(stack: Stack) -> None:
    stack.key.requests_per_minute = 5
    stack.key.save()
    responses = [chat(stack) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    denied = responses[-1]
    assert denied.json()["error"]["type"] == "rate_limit_exceeded"
    assert denied.json()["error"]["code"] == denied.headers["x-tokonomics-denied-scope"] == "rate_requests"
    assert 55 <= int(denied.headers["retry-after"]) <= 60
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY,
                      max_retries=0).chat.completions.create(**CHAT)


async def _reserve(quota: Quota, key: KeyEntry, rid: str, tokens: int = 10) -> Reservation | Denial:
    plan = quota.plan_for(ACCOUNT, key, feature="", tenant="", now=time.time())
    return await quota.reserve(rid=rid, plan=plan, estimate_nanos=0, estimated_tokens=tokens)


async def _age(redis: Redis, log: str, members: list[bytes], seconds: float) -> None:
    """Move members of a rate log back in time, as if they had been admitted `seconds` ago."""
    then = (time.time() - seconds) * 1000
    await redis.zadd(log, dict.fromkeys(members, then), xx=True)


def run(check) -> None:
    async def main() -> None:
        redis = Redis.from_url(settings.REDIS_URL)
        pipeline = PipelinedRedis(settings.REDIS_URL, timeout=5)
        try:
            await check(redis, Quota(pipeline, reservation_ttl_ms=60_000))
        finally:
            await redis.aclose()
            await pipeline.close()

    asyncio.run(main())


def test_the_request_window_slides_and_admits_exactly_the_limit() -> None:
    key = replace(KEY_ENTRY, requests_per_minute=10)

    async def check(redis: Redis, quota: Quota) -> None:
        verdicts = await asyncio.gather(*(_reserve(quota, key, f"a{i}") for i in range(25)))
        assert sum(isinstance(v, Reservation) for v in verdicts) == 10
        # Four of them slide out of the last minute: exactly four more fit, however many try.
        oldest = await redis.zrange(f"{PREFIX}:rpm", 0, 3)
        await _age(redis, f"{PREFIX}:rpm", oldest, 60.5)
        verdicts = await asyncio.gather(*(_reserve(quota, key, f"b{i}") for i in range(25)))
        assert sum(isinstance(v, Reservation) for v in verdicts) == 4
        # Still inside the window (59 s ago) is still counted.
        await _age(redis, f"{PREFIX}:rpm", await redis.zrange(f"{PREFIX}:rpm", 0, 1), 59)
        assert isinstance(await _reserve(quota, key, "c"), Denial)

    run(check)


def test_the_token_window_counts_estimates_then_actual_tokens() -> None:
    key = replace(KEY_ENTRY, tokens_per_minute=1_000)

    async def check(redis: Redis, quota: Quota) -> None:
        admitted = [await _reserve(quota, key, f"t{i}", tokens=300) for i in range(3)]
        assert all(isinstance(r, Reservation) for r in admitted)
        denial = await _reserve(quota, key, "t3", tokens=300)
        assert isinstance(denial, Denial) and denial.scope == "rate_tokens" and 0 < denial.retry_after_ms <= 60_000
        # The first call used 100 tokens, not the 300 it reserved: 200 come back.
        await quota.settle(reservation=admitted[0], actual_nanos=0, actual_tokens=100, event=b"")
        assert isinstance(await _reserve(quota, key, "t4", tokens=300), Reservation)
        assert isinstance(await _reserve(quota, key, "t5", tokens=1), Denial)
        # Calls older than a minute no longer count.
        await _age(redis, f"{PREFIX}:tpm", await redis.zrange(f"{PREFIX}:tpm", 0, 1), 61)
        assert isinstance(await _reserve(quota, key, "t6", tokens=400), Reservation)
        # A call larger than the whole limit is told to wait a minute rather than never.
        too_big = await _reserve(quota, key, "t7", tokens=5_000)
        assert isinstance(too_big, Denial) and too_big.retry_after_ms > 0

    run(check)


@contextmanager
def held_stream(stack: Stack, token: str) -> Iterator[httpx.Response]:
    body = {**CHAT, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}", "X-Sim-Hold": token}
    with httpx.stream("POST", f"{stack.proxy}/proxy/openai/chat/completions", json=body, headers=headers,
                      timeout=10) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: a dropped iterator closes the connection
        next(line for line in lines if line.startswith("data:"))
        yield response


def test_max_concurrent_is_released_when_a_client_goes_away(stack: Stack) -> None:
    stack.key.max_concurrent = 2
    stack.key.save()
    with held_stream(stack, "one"), held_stream(stack, "two"):
        third = chat(stack)
        assert third.status_code == 429 and third.json()["error"]["code"] == "rate_concurrency"
        assert third.headers["retry-after"] == "1"
    # Both clients hung up mid-stream (the upstream still holds them): their slots are free again.
    deadline = time.monotonic() + 3
    while (status := chat(stack).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200
    for token in ("one", "two"):
        httpx.post(f"{stack.sim}/_sim/release/{token}")

"""A freshly started proxy worker is warm before it says it is ready (docs/scaling.md, "Cold start"): its first
call costs about what its second does, because the lifespan start loaded what that call needs."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import httpx
import pytest

from billing.models import Budget
from proxy.budgets import budget_layout_fingerprint
from proxy.context import ProxyContext
from proxy.quota import seeded_marker_key
from proxy.warmup import context_warm
from tokonomics.redis_client import sync_redis

from ..support import KEY, ProxyProcess, Stack

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def _overhead_ms(url: str) -> float:
    answer = httpx.post(f"{url}/proxy/openai/chat/completions", json=CHAT, timeout=20,
                        headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    return float(answer.headers["x-tokonomics-overhead-ms"])


def test_a_fresh_workers_first_call_costs_about_what_its_second_does(stack: Stack) -> None:
    with ProxyProcess(TOKONOMICS_WARMUP_KEYS="1000") as worker:
        first = _overhead_ms(worker.url)
        second = _overhead_ms(worker.url)
    # Generous (a shared, noisy machine): a cold worker's first call cost ~250 ms against ~1 ms warm.
    assert first < 5 * second + 20, (first, second)


def _warmed(settings, *, redis_url: str, timeout: float, slow_directory: bool = False,
            seed: bool = False) -> tuple[bool, float, object]:
    settings.REDIS_URL = redis_url
    settings.TOKONOMICS_WARMUP_KEYS = 1000  # tests turn the preload off (tests/conftest.py): on here

    async def run() -> tuple[bool, float, object]:
        context = ProxyContext() if seed else ProxyContext(counters_rebuild=lambda **_: None)
        if slow_directory:
            async def stuck(load: object) -> int:
                await asyncio.sleep(30)  # a database that does not answer
                return 0

            context.directory.preload = stuck  # type: ignore[method-assign]
        started = time.monotonic()
        try:
            warm = await context_warm(context, timeout=timeout)
            return warm, time.monotonic() - started, context.directory
        finally:
            await context.http.close()
            await context.redis.close()

    return asyncio.run(run())


def test_warm_up_preloads_the_newest_keys_and_their_accounts_and_seeds_their_counters(
    settings, stack: Stack
) -> None:
    Budget.objects.create(account=stack.account, scope="account", period="month", limit_usd=Decimal("5"), hard=True)
    sync_redis().delete(seeded_marker_key(stack.account.pk))  # as after a Redis restart
    warm, _, directory = _warmed(settings, redis_url=settings.REDIS_URL, timeout=10, seed=True)
    assert warm
    accounts = directory.accounts_cached()
    assert [entry.id for entry in accounts] == [stack.account.pk]
    assert directory._keys[stack.key.key_hash][1].id == stack.key.pk
    fingerprint = budget_layout_fingerprint(accounts[0].timezone, accounts[0].budgets)
    assert sync_redis().sismember(seeded_marker_key(stack.account.pk), fingerprint)


@pytest.mark.django_db
def test_an_unreachable_redis_leaves_the_worker_cold_but_started(settings, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="proxy.warmup"):
        warm, took, _ = _warmed(settings, redis_url="redis://127.0.0.1:1/0", timeout=5)
    assert not warm and took < 5
    assert "warm-up failed" in caplog.text


@pytest.mark.django_db
def test_warm_up_gives_up_at_its_timeout(settings, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="proxy.warmup"):
        warm, took, _ = _warmed(settings, redis_url=settings.REDIS_URL, timeout=0.5, slow_directory=True)
    assert not warm and took < 10  # the 0.5 s timeout, not the directory's 30 s
    assert "took longer than 0.5 s" in caplog.text

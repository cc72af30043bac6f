"""The proxy warns at start-up when its Redis may evict keys (budget counters, queued usage events)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from proxy.context import ProxyContext

from ..support import PrivateRedis


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis.running(["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]) as server:
        yield server


def policy_seen(settings, url: str) -> str:
    settings.REDIS_URL = url

    async def check() -> str:
        context = ProxyContext()
        try:
            return await context.warn_if_redis_may_evict()
        finally:
            await context.http.close()
            await context.redis.close()

    return asyncio.run(check())


def test_an_evicting_redis_is_reported(settings, private_redis: PrivateRedis, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="proxy.context"):
        assert policy_seen(settings, private_redis.url) == "allkeys-lru"
    assert "maxmemory-policy noeviction" in caplog.text

    private_redis.client().config_set("maxmemory-policy", "noeviction")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="proxy.context"):
        assert policy_seen(settings, private_redis.url) == "noeviction"
    assert caplog.text == ""


def test_an_unreachable_redis_is_not_reported_as_evicting(settings, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="proxy.context"):
        assert policy_seen(settings, "redis://127.0.0.1:1/0") == ""
    assert caplog.text == ""

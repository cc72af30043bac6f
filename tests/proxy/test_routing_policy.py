"""Routing's pure parts: the order each strategy tries targets in, the backoff, Retry-After, the seam for
cross-format targets, the body's model; and the Redis-shared circuit breaker."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from email.utils import formatdate

import orjson
import pytest
from django.conf import settings

from proxy.directory import EndpointEntry, RouteEntry, RouteTarget
from proxy.redis_pipeline import PipelinedRedis
from proxy.routing import (
    FormatAdapter,
    adapter_for,
    backoff_seconds,
    body_for_model,
    retry_after_seconds,
    target_order,
)
from proxy.target_health import FAILURES_TO_OPEN, TargetHealth, breaker_keys
from tokonomics.redis_client import sync_redis

from ..support import account_entry

A, B, C = RouteTarget("openai", "gpt-4o"), RouteTarget("openai", "gpt-4o-mini"), RouteTarget("anthropic", "claude")


class FakeCall:
    def __init__(self, route: RouteEntry, estimates: dict[str, int] | None = None) -> None:
        endpoint = EndpointEntry("openai", "openai", "https://api.openai.com/v1", "openai", "sk")
        self.account = account_entry(1, endpoints={"openai": endpoint})
        self.route = route
        self.route_estimates = estimates or {}


class Health:
    def __init__(self, latency: dict[str, float] | None = None, open_: set[str] | None = None) -> None:
        self.latency, self.open = latency or {}, open_ or set()

    def latency_p50(self, target: tuple[int, str, str]) -> float:
        return self.latency.get(target[2], 0.0)

    def is_open(self, target: tuple[int, str, str]) -> bool:
        return target[2] in self.open


def order(route: RouteEntry, **kwargs: object) -> list[str]:
    call = FakeCall(route, kwargs.pop("estimates", None))  # type: ignore[arg-type]
    return [t.model for t in target_order(call, Health(**kwargs))]  # type: ignore[arg-type]


def test_each_strategy_orders_the_targets() -> None:
    assert order(RouteEntry("r", "fallback", (A, B, C))) == ["gpt-4o", "gpt-4o-mini", "claude"]
    cheap = RouteEntry("r", "lowest-cost", (A, B, C))
    assert order(cheap, estimates={A.label: 900, B.label: 50, C.label: 300}) == ["gpt-4o-mini", "claude", "gpt-4o"]
    fast = RouteEntry("r", "lowest-latency", (A, B, C))
    assert order(fast, latency={"gpt-4o": 0.4, "gpt-4o-mini": 0.9, "claude": 0.2}) == ["claude", "gpt-4o",
                                                                                         "gpt-4o-mini"]
    # An open breaker sends its target last, keeping the others' order.
    assert order(RouteEntry("r", "fallback", (A, B, C)), open_={"gpt-4o"}) == ["gpt-4o-mini", "claude", "gpt-4o"]


def test_weighted_draws_the_first_target_by_weight() -> None:
    heavy, light, never = (RouteTarget("openai", "heavy", weight=3), RouteTarget("openai", "light", weight=1),
                           RouteTarget("openai", "never", weight=0))
    route = RouteEntry("r", "weighted", (heavy, light, never))
    firsts = Counter(order(route)[0] for _ in range(4000))
    assert firsts["never"] == 0
    assert 0.70 < firsts["heavy"] / 4000 < 0.80  # 3:1
    assert all(order(route)[-1] == "never" for _ in range(50))  # weight 0: a fallback only


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    route = RouteEntry("r", "fallback", (A,), backoff_seconds=0.1)
    for retry, ceiling in ((0, 0.1), (1, 0.2), (3, 0.8)):
        waits = [backoff_seconds(route, retry) for _ in range(500)]
        assert all(0 <= w <= ceiling for w in waits) and max(waits) > ceiling * 0.8 and min(waits) < ceiling * 0.2


def test_retry_after_in_seconds_milliseconds_or_a_date() -> None:
    assert retry_after_seconds("1") == 1.0
    assert retry_after_seconds("7", "250") == 0.25  # OpenAI's retry-after-ms is the finer one
    in_three = retry_after_seconds(formatdate(time.time() + 3, usegmt=True))
    assert in_three is not None and 1.5 < in_three <= 3.0
    assert retry_after_seconds(formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None and retry_after_seconds("") is None


def test_only_the_same_body_model_format_is_served_until_translation_comes() -> None:
    assert adapter_for("openai", "openai", "chat") == FormatAdapter("openai", "openai")
    assert not FormatAdapter("openai", "openai").translates
    assert adapter_for("anthropic", "anthropic", "messages") is not None
    assert adapter_for("openai", "anthropic", "chat") is None  # skipped as untranslatable
    assert adapter_for("gemini", "gemini", "generate_content") is None  # the model is in the path
    assert adapter_for("azure-openai", "azure-openai", "chat") is None


def test_the_targets_model_replaces_the_routes_name_and_nothing_else() -> None:
    body = b'{"model":"support-default","messages":[{"role":"user","content":"hi \\u00e9"}],"max_tokens":5}'
    rewritten = orjson.loads(body_for_model(body, "gpt-4o-mini"))
    assert rewritten == {**orjson.loads(body), "model": "gpt-4o-mini"}


@pytest.mark.django_db
def test_failures_open_the_breaker_for_every_worker_through_redis() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        first = TargetHealth(PipelinedRedis(settings.REDIS_URL, timeout=1))
        second = TargetHealth(PipelinedRedis(settings.REDIS_URL, timeout=1))
        target = (4242, "openai", "gpt-4o\r\n{x}")  # a client-named model: encoded in the key
        second.watch(target)
        for _ in range(FAILURES_TO_OPEN - 1):
            await first.failure(target)
        before = first.is_open(target)
        await first.failure(target)
        await second.refresh()
        result = (before, first.is_open(target), second.is_open(target))
        await first.redis.close()
        await second.redis.close()
        return result

    sync_redis().delete(*breaker_keys(4242, "openai", "gpt-4o\r\n{x}"))
    assert asyncio.run(scenario()) == (False, True, True)
    counter, flag = breaker_keys(4242, "openai", "gpt-4o\r\n{x}")
    assert "\r" not in flag and "{x}" not in flag and 0 < sync_redis().ttl(flag) <= 30

"""How each route target has been doing: a circuit breaker per target shared by every worker through
Redis, and the recent latency of its answers as this process measured them (for `lowest-latency`).

Neither costs a call a round trip on the happy path: a failure is counted in Redis as it happens (a
failed attempt is already slow), and the breakers' state comes back in one MGET a second, in the
background, for the targets this process has routed to lately (`refresh`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from statistics import median

from redis.exceptions import RedisError

from .budgets import account_prefix, budget_value_token
from .redis_pipeline import ProxyRedis

log = logging.getLogger(__name__)

# Failures of one target within FAILURE_WINDOW_SECONDS, across workers, that open its breaker…
FAILURES_TO_OPEN = 5
FAILURE_WINDOW_SECONDS = 30
# …which then keeps the routes skipping it for this long (one call tries it again after: the breaker is
# an expiring key, and a route whose every target is open still tries them).
COOL_DOWN_SECONDS = 30
# Latency samples kept per target (their median is the target's recent p50), and targets kept at most.
LATENCY_SAMPLES = 32
MAX_TRACKED_TARGETS = 10_000
REFRESH_SECONDS = 1.0


def breaker_keys(account_id: int, endpoint: str, model: str) -> tuple[str, str]:
    """(failure counter, open flag) of a target. The model is the client's data: encoded (an endpoint slug is
    a validated slug)."""
    base = f"{account_prefix(account_id)}:rb:{endpoint}/{budget_value_token(model)}"
    return f"{base}:n", f"{base}:open"


class TargetHealth:
    """Per-process view of the targets' breakers and latencies."""

    def __init__(self, redis: ProxyRedis) -> None:
        self.redis = redis
        self._open_until: dict[tuple[int, str, str], float] = {}  # monotonic deadline of an open breaker
        self._watched: dict[tuple[int, str, str], float] = {}  # target → when this process last routed to it
        self._latency: dict[tuple[int, str, str], deque[float]] = {}

    def is_open(self, target: tuple[int, str, str]) -> bool:
        until = self._open_until.get(target)
        return until is not None and until > time.monotonic()

    def watch(self, target: tuple[int, str, str]) -> None:
        if len(self._watched) >= MAX_TRACKED_TARGETS:
            self._watched.clear()
        self._watched[target] = time.monotonic()

    def latency_p50(self, target: tuple[int, str, str]) -> float:
        """Seconds to the answer's start, median of the recent ones; 0 for a target never measured (so it is
        tried, and measured)."""
        samples = self._latency.get(target)
        return median(samples) if samples else 0.0

    def latency_observe(self, target: tuple[int, str, str], seconds: float) -> None:
        samples = self._latency.get(target)
        if samples is None:
            if len(self._latency) >= MAX_TRACKED_TARGETS:
                self._latency.clear()
            samples = self._latency[target] = deque(maxlen=LATENCY_SAMPLES)
        samples.append(seconds)

    async def failure(self, target: tuple[int, str, str]) -> None:
        """Count a failed attempt; the one that reaches FAILURES_TO_OPEN opens the breaker for everyone."""
        counter, flag = breaker_keys(*target)
        try:
            failures = await self.redis.execute("INCR", counter)
            if failures == 1:
                await self.redis.execute("EXPIRE", counter, FAILURE_WINDOW_SECONDS)
            if failures >= FAILURES_TO_OPEN:
                await self.redis.execute("SET", flag, "1", "EX", COOL_DOWN_SECONDS)
                await self.redis.execute("DEL", counter)
                self._open_until[target] = time.monotonic() + COOL_DOWN_SECONDS
        except (RedisError, OSError, TimeoutError) as exc:  # a breaker that cannot count must not fail the call
            log.debug("could not count a failure of route target %s: %s", target, exc)

    async def refresh(self) -> None:
        """Read the breakers of the targets routed to in the last minute (one MGET): what other workers opened."""
        now = time.monotonic()
        targets = [t for t, seen in self._watched.items() if now - seen < 60]
        for t in [t for t, seen in self._watched.items() if now - seen >= 60]:
            del self._watched[t]
        if not targets:
            return
        flags = await self.redis.execute("MGET", *(breaker_keys(*t)[1] for t in targets))
        for target, flag in zip(targets, flags, strict=True):
            if flag is not None:
                # Renewed by every refresh while the flag lives (a refresh a second), so it lapses with it.
                self._open_until[target] = max(self._open_until.get(target, 0.0), now + 2 * REFRESH_SECONDS)
            else:
                self._open_until.pop(target, None)

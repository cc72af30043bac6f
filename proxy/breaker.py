"""The Redis circuit breaker of one proxy process."""

from __future__ import annotations

import time

from . import metrics


class CircuitBreaker:
    """After a few Redis failures in a row, skip Redis for a short while instead of making every
    call wait for a timeout; one call probes again once the pause is over. A single slow
    connection (a burst opening new ones on a busy machine) does not open it."""

    def __init__(self, pause_seconds: float = 1.0, failures_to_open: int = 3) -> None:
        self.pause_seconds = pause_seconds
        self.failures_to_open = failures_to_open
        self.failures = 0
        self.open_until = 0.0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self.open_until

    def trip(self) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open:
            if not self.open_until:
                metrics.redis_breaker_open.set(1)
                metrics.redis_breaker_opens_total.inc()
            self.open_until = time.monotonic() + self.pause_seconds

    def reset(self) -> None:
        # Called after every answer from Redis: touch the gauge only when the breaker really closes.
        if self.open_until:
            metrics.redis_breaker_open.set(0)
        self.failures = 0
        self.open_until = 0.0

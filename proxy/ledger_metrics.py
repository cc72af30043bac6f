"""`tokonomics_ledger_dead_letters_total`: usage events the ledger set aside, by reason.

The ledger runs in Celery workers (maybe on other hosts, never sharing PROMETHEUS_MULTIPROC_DIR with
the proxies that serve /metrics), so the count lives in Redis, which every process already shares:
the ledger increments one hash field per dead letter, /metrics reads the hash once per scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import redis
from django.conf import settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

DEAD_LETTERS_KEY = "tk:ledger:dead_letters"
# The only label values: the ledger maps every failure to one of these.
REASONS = ("malformed", "account", "rejected")


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts: an unreachable Redis must not hold a scrape for seconds.
    timeout = settings.TOKONOMICS_REDIS_TIMEOUT
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


class DeadLetterCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        try:
            counts = _client(settings.REDIS_URL).hgetall(DEAD_LETTERS_KEY)
        except (redis.RedisError, OSError):
            return  # no series rather than a wrong zero
        family = CounterMetricFamily("tokonomics_ledger_dead_letters", "Usage events the ledger could not store "
                                     "and set aside (admin: Usage dead letters).", labels=["reason"])
        for reason in REASONS:
            family.add_metric([reason], float(counts.get(reason.encode(), 0)))
        yield family


_registry = CollectorRegistry(auto_describe=False)
_registry.register(DeadLetterCollector())


def dead_letters_text() -> bytes:
    return generate_latest(_registry)

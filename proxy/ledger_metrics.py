"""What the ledger's state looks like from Redis, read at each scrape:

- `tokonomics_ledger_dead_letters_total`: usage events the ledger set aside, by reason, and
  `tokonomics_ledger_dead_letters_waiting`: those not replayed yet (the ledger writes the number after each
  change, from the database);
- `tokonomics_ledger_lag_seconds` and `tokonomics_ledger_pending_events`: how old the oldest usage event
  still waiting in an account's stream is, and how many wait. Read from the streams themselves, not
  reported by the ledger, so a ledger that stopped shows as a growing lag instead of a stale "all fine".

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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tokonomics.redis_client import SyncRedis, redis_connect

DEAD_LETTERS_KEY = "tk:ledger:dead_letters"
DEAD_LETTERS_WAITING_KEY = "tk:ledger:dead_letters_waiting"
# The only label values: the ledger maps every failure to one of these.
REASONS = ("malformed", "account", "rejected")
# Every account's usage stream (proxy/quota.py events_stream_key; Redis globs take braces literally).
EVENT_STREAMS = "tk:{a:*}:events"
# A scrape reads at most this many streams: a bound on its cost, not on accounts (past it the lag reads low).
MAX_STREAMS = 10_000
SCAN_COUNT = 1_000


@lru_cache(maxsize=4)
def _client(url: str) -> SyncRedis:
    # Short timeouts: an unreachable Redis must not hold a scrape for seconds. On a cluster, scan_iter
    # visits every master.
    return redis_connect(url, timeout=settings.TOKONOMICS_REDIS_TIMEOUT)


class DeadLetterCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        try:
            pipe = _client(settings.REDIS_URL).pipeline(transaction=False)
            pipe.hgetall(DEAD_LETTERS_KEY)
            pipe.get(DEAD_LETTERS_WAITING_KEY)
            counts, waiting = pipe.execute()
        except (redis.RedisError, OSError):
            return  # no series rather than a wrong zero
        family = CounterMetricFamily("tokonomics_ledger_dead_letters", "Usage events the ledger could not store "
                                     "and set aside (admin: Usage dead letters).", labels=["reason"])
        for reason in REASONS:
            family.add_metric([reason], float(counts.get(reason.encode(), 0)))
        yield family
        unreplayed = GaugeMetricFamily("tokonomics_ledger_dead_letters_waiting", "Dead letters not replayed yet "
                                       "(admin: Usage dead letters).")
        unreplayed.add_metric([], float(waiting or 0))
        yield unreplayed


class LedgerLagCollector(Collector):
    """No labels: the streams are per account, and an account is never a label (CONTRACT §5)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        client = _client(settings.REDIS_URL)
        try:
            streams = []
            for key in client.scan_iter(match=EVENT_STREAMS, count=SCAN_COUNT, _type="stream"):
                streams.append(key)
                if len(streams) >= MAX_STREAMS:
                    break
            pipe = client.pipeline(transaction=False)
            for stream in streams:
                pipe.xlen(stream)
                pipe.xrange(stream, count=1)  # the ledger deletes what it stored: the first entry is the oldest waiting
            answers = pipe.execute() if streams else []
            seconds, micros = client.time()  # Redis' clock, the one that stamped the entry ids
        except (redis.RedisError, OSError):
            return
        now_ms = seconds * 1000 + micros / 1000
        pending = 0
        oldest_ms = now_ms
        for length, first in zip(answers[::2], answers[1::2], strict=True):
            pending += int(length)
            if first:
                oldest_ms = min(oldest_ms, float(first[0][0].split(b"-")[0]))
        lag = GaugeMetricFamily("tokonomics_ledger_lag_seconds", "Age of the oldest usage event not yet stored "
                                "by the ledger (0 when none waits).")
        lag.add_metric([], max(0.0, (now_ms - oldest_ms) / 1000))
        yield lag
        waiting = GaugeMetricFamily("tokonomics_ledger_pending_events", "Usage events waiting in the accounts' "
                                    "streams for the ledger.")
        waiting.add_metric([], float(pending))
        yield waiting


_registry = CollectorRegistry(auto_describe=False)
_registry.register(DeadLetterCollector())
_registry.register(LedgerLagCollector())


def ledger_text() -> bytes:
    return generate_latest(_registry)

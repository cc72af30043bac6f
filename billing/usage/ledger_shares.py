"""Which accounts' streams a ledger worker writes this round: a fair share of them, none another worker holds.

Two workers writing one account at once wait on each other's rollup cells (a batch adds to the same hours of
the same features), so every worker takes its share of the accounts — all of them divided by the workers
alive — under a session advisory lock per account, tried, never waited for: a worker takes the accounts
nobody holds, from a random place in the list, so that all are served. Different accounts go in parallel.
A worker that dies drops its connection, and with it its locks."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

from tokonomics.redis_client import SyncRedis

LOCK_CLASS = 7146  # pg_try_advisory_lock(LOCK_CLASS, account id): the ledger's hold on an account's stream
WORKERS_KEY = "tokonomics:ledger:workers"  # a sorted set: consumer name → last round's time
WORKER_ALIVE_SECONDS = 15.0


def _workers_alive(client: SyncRedis, consumer: str) -> int:
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(WORKERS_KEY, {consumer: now})
    pipe.zremrangebyscore(WORKERS_KEY, "-inf", now - WORKER_ALIVE_SECONDS)
    pipe.zcard(WORKERS_KEY)
    pipe.expire(WORKERS_KEY, int(WORKER_ALIVE_SECONDS) * 4)
    return max(1, int(pipe.execute()[2]))


@contextmanager
def owned_streams(client: SyncRedis, consumer: str, stream_accounts: dict[bytes, int]) -> Iterator[list[bytes]]:
    """The streams this worker writes this round, held until the block ends. Every stream where the
    database has no advisory locks (SQLite: one writer at a time anyway)."""
    streams = list(stream_accounts)
    if connection.vendor != "postgresql":
        yield streams
        return
    share = math.ceil(len(streams) / _workers_alive(client, consumer))
    start = random.randrange(len(streams))  # noqa: S311 - fairness, not secrecy
    order = [stream_accounts[s] for s in streams[start:] + streams[:start]]
    with connection.cursor() as cursor:
        # Tried in the list's order and no further than the share: LIMIT stops the scan, so no lock is taken
        # beyond it (no ORDER BY, which would try them all first).
        cursor.execute("SELECT a FROM unnest(%s::int[]) AS a WHERE pg_try_advisory_lock(%s, a) LIMIT %s",
                       [order, LOCK_CLASS, share])
        held = {row[0] for row in cursor.fetchall()}
    try:
        yield [s for s in streams if stream_accounts[s] in held]
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, a) FROM unnest(%s::int[]) AS a",
                               [LOCK_CLASS, list(held)])

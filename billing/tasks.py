from __future__ import annotations

import contextlib

from django.conf import settings
from redis.exceptions import LockError

from billing.budgets.counters import budget_counters_rebuild, budget_counters_rebuild_all
from billing.usage.ledger import usage_ingest
from billing.usage.partitions import usage_partitions_ensure
from billing.usage.retention import usage_retention_purge
from tokonomics.celery import app
from tokonomics.redis_client import sync_redis


@app.task(ignore_result=True)
def usage_ingest_task() -> int:
    # Beat fires every second; one drain at a time is enough and keeps runs from piling up.
    lock = sync_redis().lock("tk:lock:usage_ingest", timeout=30, blocking=False)
    if not lock.acquire(blocking=False):
        return 0
    try:
        return usage_ingest(max_seconds=settings.USAGE_INGEST_MAX_SECONDS)
    finally:
        with contextlib.suppress(LockError):
            lock.release()


@app.task(ignore_result=True)
def usage_retention_purge_task() -> int:
    # Daily; the lock keeps two beat schedulers (or a manual run) from deleting side by side.
    lock = sync_redis().lock("tk:lock:usage_retention", timeout=3600, blocking=False)
    if not lock.acquire(blocking=False):
        return 0
    try:
        return sum(usage_retention_purge().values())
    finally:
        with contextlib.suppress(LockError):
            lock.release()


@app.task(ignore_result=True)
def usage_partitions_ensure_task() -> int:
    # Daily, months ahead of need; the advisory lock inside makes a second run at once wait, then do nothing.
    return len(usage_partitions_ensure())


@app.task(ignore_result=True)
def budget_counters_rebuild_task(account_id: int | None = None) -> int:
    """Rebuild budget counters from the usage records: one account's, or every account's (None)."""
    if account_id is None:
        return budget_counters_rebuild_all()
    budget_counters_rebuild(account_id=account_id)
    return 1

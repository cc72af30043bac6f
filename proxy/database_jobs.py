"""The proxy's rare synchronous database work (a cache miss, seeding counters, a Redis-less ledger write),
run off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

T = TypeVar("T")


async def database_job(job: Callable[[], T]) -> T:
    """Run `job` in an executor thread on a fresh connection, closed afterwards: the jobs are rare, and the
    thread may never run Django code again, so it must not pin a connection."""

    def run() -> T:
        close_old_connections()
        try:
            return job()
        finally:
            connections.close_all()

    return await sync_to_async(run, thread_sensitive=False)()

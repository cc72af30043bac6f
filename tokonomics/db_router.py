"""Dashboards and the API's aggregates read the ledger from a read replica when DATABASE_REPLICA_URL names
one (docs/scaling.md): the heavy reads leave the primary, which keeps the ledger's writes.

Only reads marked as reporting go there (`replica_reads`, or views decorated `reads_from_replica`), and of
those only the ledger's tables: sign-in, sessions, accounts and permissions are read from the primary, as
is everything inside a transaction (a replica lags; what a transaction reads it may write back). Writes
and migrations always go to the primary. Without a replica configured the router is inert.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

REPLICA = "replica"
# The ledger: usage records and their rollups (billing/models/usage.py), by model label (this layer may not
# import billing).
LEDGER_MODELS = frozenset({
    "billing.usagerecord", "billing.usagerollup", "billing.usagedayrollup", "billing.usagesummaryrollup",
    "billing.usagesummarydayrollup", "billing.usagetenantrollup", "billing.usagetenantdayrollup",
    "billing.usagetagrollup",
})

_reporting: ContextVar[bool] = ContextVar("tokonomics_replica_reads", default=False)

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def replica_reads() -> Iterator[None]:
    """The ledger's reads in this block may be served by the replica (a reporting read: minutes-old data
    would do, a replica lags by less)."""
    token = _reporting.set(True)
    try:
        yield
    finally:
        _reporting.reset(token)


def reads_from_replica(view: Callable[P, R]) -> Callable[P, R]:
    """A view (a dashboard, an API aggregate) whose ledger reads may be served by the replica."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with replica_reads():
            return view(*args, **kwargs)

    return wrapped


def replica_configured() -> bool:
    return REPLICA in connections.settings


class ReplicaRouter:
    """DATABASE_ROUTERS' one router: reporting reads of the ledger to the replica, the rest to the primary."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        if not _reporting.get() or model._meta.label_lower not in LEDGER_MODELS or not replica_configured():
            return None
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return None  # a transaction reads what it may write: from the primary
        return REPLICA

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        return True  # one database's rows, whichever copy they were read from

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        return db != REPLICA  # the replica follows the primary's schema by replication

"""The usage ledger's monthly partitions on PostgreSQL (migration 0022 made the table partitioned by
created_at): one partition a UTC month, named billing_usagerecord_pYYYYMM, and a DEFAULT partition that
takes any row no month holds yet, so an insert never fails for want of a partition. A daily beat task
creates the months ahead; retention drops whole months (billing/usage/retention.py). SQLite keeps one
plain table: every function here does nothing there."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from billing.models import UsageRecord

log = logging.getLogger(__name__)
PARTITIONS_LOCK_ID = 7_146_390_002  # pg_advisory_xact_lock key of partition maintenance
TABLE = UsageRecord._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_pdefault"
MONTHS_BEHIND_MAX = 120  # the oldest month ensure makes: ten years before now, past any plan's retention


@dataclass(frozen=True)
class UsagePartition:
    name: str
    start: datetime | None  # None for the DEFAULT partition
    end: datetime | None
    rows: int  # PostgreSQL's estimate (as of the last ANALYZE)
    bytes: int  # heap, TOAST and indexes


def month_start(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def month_after(month: datetime) -> datetime:
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


def _months_before(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 - count
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{TABLE}_p{month:%Y%m}"


def partitioned() -> bool:
    """Whether the usage table is partitioned here (PostgreSQL after migration 0022)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [TABLE])
        return bool(cursor.fetchone()[0] == "p")


def usage_partitions() -> list[UsagePartition]:
    """The usage table's partitions, oldest month first and DEFAULT last; empty on SQLite."""
    if not partitioned():
        return []
    with connection.cursor() as cursor:
        # The bounds are read back as timestamptz from the catalog's own text, whatever the session time zone.
        cursor.execute(
            r"""
            SELECT c.relname,
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz,
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz,
                   greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass
            """,
            [TABLE],
        )
        partitions = [UsagePartition(*row) for row in cursor.fetchall()]
    return sorted(partitions, key=lambda p: (p.start is None, p.start or datetime.min.replace(tzinfo=UTC)))


def usage_partitions_ensure(*, now: datetime | None = None, ahead: int = 3,
                            since: datetime | None = None) -> list[str]:
    """Create the missing monthly partitions, from the oldest month a row of the DEFAULT partition is in
    (if any; or `since`'s month, if earlier: a bulk loader's) up to `ahead` months after `now`; a month's
    rows move out of the DEFAULT partition into it. Idempotent, and safe when two run at once (an advisory
    lock). Returns the partitions created."""
    if not partitioned():
        return []
    now = now or datetime.now(UTC)
    created = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITIONS_LOCK_ID])
        existing = {p.start for p in usage_partitions() if p.start is not None}
        cursor.execute(f"SELECT min(created_at) FROM {DEFAULT_PARTITION}")
        (oldest,) = cursor.fetchone()
        month = month_start(min(moment for moment in (oldest, since, now) if moment is not None))
        # A row stamped decades back (a clock far off) stays in the DEFAULT partition, whose rows retention
        # deletes in batches, rather than making a month table for every month since.
        month = max(month, _months_before(month_start(now), MONTHS_BEHIND_MAX))
        last = month_start(now)
        for _ in range(ahead):
            last = month_after(last)
        while month <= last:
            if month not in existing:
                _partition_create(cursor, month=month)
                created.append(partition_name(month))
            month = month_after(month)
    if created:
        # Maintenance, not a user's write: the log records it, the audit trail does not.
        log.info("usage partitions created: %s", ", ".join(created))
    return created


def _partition_create(cursor: CursorWrapper, *, month: datetime) -> None:
    """One month's partition, filled with the month's rows from the DEFAULT partition, then attached:
    PostgreSQL refuses a partition whose rows still sit in the DEFAULT one."""
    name, end = partition_name(month), month_after(month)
    _constraints_immediate(cursor)
    cursor.execute(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    # The bound as a CHECK lets ATTACH skip scanning the new table to prove it.
    cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bound "
                   "CHECK (created_at IS NOT NULL AND created_at >= %s AND created_at < %s)", [month, end])
    columns = ", ".join(f'"{column}"' for column in _columns(cursor))
    cursor.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE created_at >= %s AND created_at < %s "
        f"RETURNING {columns}) INSERT INTO {name} ({columns}) SELECT {columns} FROM moved",
        [month, end],
    )
    if cursor.rowcount:
        log.info("usage partition %s: %d rows moved from %s", name, cursor.rowcount, DEFAULT_PARTITION)
    # ATTACH builds the partition's share of every index and constraint of the table, after the rows are in.
    cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [month, end])
    cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bound")


def usage_partition_drop(*, partition: UsagePartition) -> dict[int, int]:
    """Detach and drop one month's partition; returns its rows per account id, counted just before."""
    assert partition.start is not None, "the DEFAULT partition is never dropped"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITIONS_LOCK_ID])
        cursor.execute(f"SELECT account_id, count(*) FROM {partition.name} GROUP BY account_id")
        rows = dict(cursor.fetchall())
        _constraints_immediate(cursor)
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {partition.name}")
        cursor.execute(f"DROP TABLE {partition.name}")
    log.info("usage partition %s dropped (%s to %s, %d records)", partition.name, partition.start,
             partition.end, sum(rows.values()))
    return rows


def _columns(cursor: CursorWrapper) -> list[str]:
    cursor.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                   "AND NOT attisdropped ORDER BY attnum", [TABLE])
    return [name for (name,) in cursor.fetchall()]


def _constraints_immediate(cursor: CursorWrapper) -> None:
    # PostgreSQL refuses to ALTER or DROP a table holding pending deferred foreign key checks, which rows
    # written earlier in the same transaction do (a test's, or a caller's): run those checks now. Every
    # deferrable constraint of this schema is Django's INITIALLY DEFERRED, to which the next line returns.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")

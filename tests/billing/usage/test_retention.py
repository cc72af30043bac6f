"""Retention: raw records past the account's retention go, in batches; rollups and recent records stay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from billing.models import UsageRecord, UsageRollup, UsageTagRollup
from billing.usage.labels import label_set_ids, labels_of
from billing.usage.partitions import usage_partitions
from billing.usage.records import usage_record_batch
from billing.usage.retention import usage_retention_purge

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AGES_IN_DAYS = 120  # record n is (n % 120) days and one hour old


def _insert_records(account_id: int, first: int, count: int) -> None:
    """`count` records for the account, ages cycling over 0…119 days (+1 hour), written by PostgreSQL itself."""
    labels = labels_of({"feature": "support-bot", "environment": "production", "provider": "openai",
                        "model": "gpt-4o-mini", "served_model": "gpt-4o-mini", "operation": "chat"})
    labels_id = label_set_ids([(account_id, labels)])[(account_id, labels)]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '128MB'")  # sort in memory
        cursor.execute(
            f"""
            INSERT INTO {UsageRecord._meta.db_table} (
                request_id, account_id, key_id, labels_id, tenant, input_tokens, output_tokens, cached_input_tokens,
                cache_write_tokens, reasoning_tokens, cost_usd, latency_ms, status_code, denied_scope, streamed,
                enforced, created_at)
            SELECT format('req_bulk_%%s_%%s', lpad((999 - age)::text, 3, '0'), lpad(n::text, 8, '0')), %s, NULL,
                   %s, '', 10, 5, 0, 0, 0, 0.0000045, 12, 200, '', false, true,
                   %s::timestamptz - age * interval '1 day' - interval '1 hour'
            FROM (SELECT n, n %% {AGES_IN_DAYS} AS age FROM generate_series(%s, %s) AS n) AS numbers
            -- Oldest first, request ids in the same order: every index is appended to, not split all over.
            ORDER BY age DESC, n
            """,
            [account_id, labels_id, NOW, first, first + count - 1],
        )


def _schema(table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The table's unique and foreign key constraints, and its other indexes, as (name, definition)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC, conname",
                       [table])
        constraints = cursor.fetchall()
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
                       "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass) ORDER BY indexname",
                       [table, table])
        return constraints, cursor.fetchall()


@contextmanager
def _bulk_load(table: str) -> Iterator[None]:
    """Load into the bare table and build its indexes and constraints at the end, as pg_restore does:
    several times faster than maintaining ten indexes and a foreign key check row by row. The test's
    transaction undoes it all."""
    constraints, indexes = _schema(table)
    with connection.cursor() as cursor:
        # ALTER TABLE is refused while deferred foreign key checks are pending (the accounts just made).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for name, _ in constraints:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            # A partitioned table's index reads "ON ONLY table": built as such it would cover no partition.
            cursor.execute(definition.replace(" ON ONLY ", " ON ", 1))
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        cursor.execute(f"ANALYZE {table}")
    assert _schema(table) == (constraints, indexes)


def _expected_survivors(first: int, count: int, retention_days: int) -> int:
    return sum(1 for n in range(first, first + count) if n % AGES_IN_DAYS < retention_days)


class DeleteCounter:
    """Counts the rows each DELETE statement removes (an execute_wrapper)."""

    def __init__(self) -> None:
        self.rowcounts: list[int] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("DELETE"):
            self.rowcounts.append(context["cursor"].rowcount)
        return result


@pytest.mark.slow
@pytest.mark.django_db
def test_purging_a_million_records_in_batches_keeps_rollups_and_unexpired_records(acme, globex) -> None:
    # acme: the Pro plan's 90 days. globex: a 7-day override of the Starter plan's 30.
    globex.retention_days = 7
    globex.save()
    started = time.monotonic()
    with _bulk_load(UsageRecord._meta.db_table):
        _insert_records(acme.pk, 1, 600_000)
        _insert_records(globex.pk, 600_001, 400_000)
    inserted = time.monotonic()
    # A few records through the ledger, so the purged hours have rollups too.
    old = NOW - timedelta(days=200)
    usage_record_batch(events=[
        {"request_id": f"req_old_{n}", "account_id": acme.pk, "provider": "openai", "model": "gpt-4o-mini",
         "cost_usd": "0.25", "status_code": 200, "tags": {"intent": "summarize"},
         "created_at": (old + timedelta(minutes=n)).timestamp()}
        for n in range(10)
    ])
    assert UsageRecord.objects.count() == 1_000_010
    rollups_before = list(UsageRollup.objects.values_list("hour", "requests", "cost_usd"))
    tags_before = list(UsageTagRollup.objects.values_list("hour", "tag", "value", "requests", "cost_usd"))
    assert rollups_before and tags_before

    # Every month that ends before both accounts' cutoffs (acme's 90 days: 2025-12-01 12:00) is dropped whole.
    months_done = datetime(2025, 12, 1, tzinfo=UTC)
    in_dropped_months = UsageRecord.objects.filter(created_at__lt=months_done).count()
    assert in_dropped_months > 0
    counter = DeleteCounter()
    purge_started = time.monotonic()
    with connection.execute_wrapper(counter):
        deleted = usage_retention_purge(now=NOW, batch_size=50_000)
    purged = time.monotonic()
    print(f"\nretention: inserted 1,000,000 records in {inserted - started:.1f} s, "
          f"purged {sum(deleted.values()):,} in {purged - purge_started:.1f} s ({len(counter.rowcounts)} batches)")

    acme_left = _expected_survivors(1, 600_000, 90)
    globex_left = _expected_survivors(600_001, 400_000, 7)
    assert deleted == {"acme": 600_000 - acme_left + 10, "globex": 400_000 - globex_left}
    assert UsageRecord.objects.filter(account=acme).count() == acme_left
    assert UsageRecord.objects.filter(account=globex).count() == globex_left
    oldest_kept = UsageRecord.objects.filter(account=acme).order_by("created_at").first()
    assert oldest_kept is not None and NOW - oldest_kept.created_at < timedelta(days=90)
    deleted_in_batches = sum(deleted.values()) - in_dropped_months
    assert max(counter.rowcounts) <= 50_000 and sum(counter.rowcounts) == deleted_in_batches
    assert len(counter.rowcounts) >= deleted_in_batches // 50_000
    assert all(p.start is None or p.start >= months_done for p in usage_partitions())
    assert list(UsageRollup.objects.values_list("hour", "requests", "cost_usd")) == rollups_before
    assert list(UsageTagRollup.objects.values_list("hour", "tag", "value", "requests", "cost_usd")) == tags_before

    assert usage_retention_purge(now=NOW, batch_size=50_000) == {}  # nothing left to do


@pytest.mark.django_db
def test_retention_follows_the_plan_unless_the_account_overrides_it(acme, globex, plans) -> None:
    _insert_records(acme.pk, 1, 240)
    _insert_records(globex.pk, 1001, 240)
    assert usage_retention_purge(now=NOW, batch_size=7) == {"acme": 60, "globex": 180}  # 90 and 30 days

    acme.retention_days = 100
    acme.save()
    acme.plan = plans["starter"]
    acme.save()
    assert usage_retention_purge(now=NOW) == {}  # the override wins over the Starter plan's 30 days
    acme.retention_days = None
    acme.save()
    assert usage_retention_purge(now=NOW) == {"acme": 120}

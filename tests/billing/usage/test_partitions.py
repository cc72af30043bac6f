"""The usage ledger's monthly partitions on PostgreSQL: where rows land, how months are made and moved
out of the DEFAULT partition, and retention dropping whole months while deleting only at the edges."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from billing.models import UsageRecord
from billing.usage.partitions import usage_partitions, usage_partitions_ensure
from billing.usage.records import usage_record_batch
from billing.usage.retention import usage_retention_purge

from ...support import usage_record_build, usage_record_create
from .test_retention import DeleteCounter

pytestmark = pytest.mark.django_db

LAST_OF_NOVEMBER = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
FIRST_OF_DECEMBER = datetime(2026, 12, 1, tzinfo=UTC)


def _record(account: Any, request_id: str, created_at: datetime) -> UsageRecord:
    return usage_record_create(request_id=request_id, account=account, provider="openai",
                               model="gpt-4o-mini", status_code=200, created_at=created_at)


def _partition_of(record: UsageRecord) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {UsageRecord._meta.db_table} WHERE id = %s",
                       [record.pk])
        return str(cursor.fetchone()[0])


def _names() -> set[str]:
    return {p.name for p in usage_partitions()}


def test_the_table_is_partitioned_with_the_partition_key_in_every_unique_constraint() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'billing_usagerecord'::regclass")
        assert cursor.fetchone()[0] == "p"
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = 'billing_usagerecord'::regclass AND contype IN ('p', 'u') ORDER BY conname")
        assert cursor.fetchall() == [("billing_usagerecord_pkey", "PRIMARY KEY (id, created_at)")]
        # The request id's uniqueness is a unique index (on its hash), which ends in created_at too.
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'usage_request_once'")
        assert cursor.fetchone()[0].endswith("(hashtextextended((request_id)::text, (0)::bigint), created_at)")
        # Fixed-width columns widest first and variable-length ones last: no alignment padding in a row.
        cursor.execute("SELECT t.typlen, t.typalign FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                       "WHERE a.attrelid = 'billing_usagerecord'::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                       "ORDER BY a.attnum")
        widths = [typlen if typlen > 0 else 0 for typlen, _ in cursor.fetchall()]
        assert widths == sorted(widths, reverse=True)
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'billing_usagerecord'")
        indexes = {name for (name,) in cursor.fetchall()}
    # Every index the model declares is on the table under its own name, so later migrations find it.
    assert {index.name for index in UsageRecord._meta.indexes} <= indexes
    assert "billing_usagerecord_pdefault" in _names()


def test_a_month_boundary_splits_records_between_partitions(acme) -> None:
    usage_partitions_ensure(now=datetime(2026, 11, 15, tzinfo=UTC))
    november = _record(acme, "req_nov", LAST_OF_NOVEMBER)
    december = _record(acme, "req_dec", FIRST_OF_DECEMBER)
    assert _partition_of(november) == "billing_usagerecord_p202611"
    assert _partition_of(december) == "billing_usagerecord_p202612"


def test_create_returns_the_new_id(acme) -> None:
    first = _record(acme, "req_1", FIRST_OF_DECEMBER)
    second = usage_record_build(request_id="req_2", account=acme, provider="openai", status_code=200,
                                created_at=FIRST_OF_DECEMBER)
    second.save()
    assert first.pk and second.pk and second.pk > first.pk
    assert UsageRecord.objects.get(pk=second.pk).request_id == "req_2"


def test_a_new_month_takes_its_rows_out_of_the_default_partition(acme) -> None:
    may, june = datetime(2030, 5, 10, tzinfo=UTC), datetime(2030, 6, 2, tzinfo=UTC)
    in_may, in_june = _record(acme, "req_may", may), _record(acme, "req_june", june)
    assert _partition_of(in_may) == _partition_of(in_june) == "billing_usagerecord_pdefault"

    assert usage_partitions_ensure(now=may, ahead=0) == ["billing_usagerecord_p203005"]
    assert _partition_of(in_may) == "billing_usagerecord_p203005"
    assert _partition_of(in_june) == "billing_usagerecord_pdefault"  # beyond `ahead`: stays where it is
    assert UsageRecord.objects.get(pk=in_may.pk).request_id == "req_may"
    # The moved rows are under every index of the table (ATTACH built the partition's share).
    assert list(UsageRecord.objects.filter(account=acme, created_at__lt=june).values_list("pk", flat=True)) == [
        in_may.pk]
    partition = next(p for p in usage_partitions() if p.name == "billing_usagerecord_p203005")
    assert (partition.start, partition.end) == (datetime(2030, 5, 1, tzinfo=UTC), datetime(2030, 6, 1, tzinfo=UTC))
    assert partition.bytes > 0


def test_ensure_is_idempotent(acme) -> None:
    now = datetime(2031, 1, 20, tzinfo=UTC)
    _record(acme, "req_old", datetime(2030, 11, 3, tzinfo=UTC))
    created = usage_partitions_ensure(now=now)
    assert created == [f"billing_usagerecord_p{month}" for month in
                       ("203011", "203012", "203101", "203102", "203103", "203104")]
    assert usage_partitions_ensure(now=now) == []
    assert usage_partitions_ensure(now=now - timedelta(days=60)) == []


def test_the_same_request_twice_is_one_record(acme) -> None:
    usage_partitions_ensure(now=datetime(2026, 11, 15, tzinfo=UTC))
    event = {"request_id": "req_twice", "account_id": acme.pk, "provider": "openai", "model": "gpt-4o-mini",
             "cost_usd": "0.25", "status_code": 200, "created_at": LAST_OF_NOVEMBER.timestamp()}
    assert usage_record_batch(events=[event]) == 1
    assert usage_record_batch(events=[event]) == 0
    assert UsageRecord.objects.filter(request_id="req_twice").count() == 1
    # The database holds it too: the unique constraint spans the partitions (it contains created_at).
    with pytest.raises(IntegrityError), transaction.atomic():
        _record(acme, "req_twice", LAST_OF_NOVEMBER)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_usagerecord (request_id, account_id, labels_id, tenant, input_tokens, output_tokens, "
            "cached_input_tokens, cache_write_tokens, reasoning_tokens, latency_ms, status_code, denied_scope, "
            "streamed, enforced, created_at) VALUES ('req_twice', %s, %s, '', 0, 0, 0, 0, 0, 0, 200, '', false, true, "
            "%s) ON CONFLICT DO NOTHING",
            [acme.pk, UsageRecord.objects.get(request_id="req_twice").labels_id, LAST_OF_NOVEMBER])
        assert cursor.rowcount == 0


def _four_records_each_around_december_first(*accounts: Any, retention_days: tuple[int, ...]) -> None:
    for account, days in zip(accounts, retention_days, strict=True):
        account.retention_days = days
        account.save()
    usage_partitions_ensure(now=datetime(2026, 11, 15, tzinfo=UTC))
    for account in accounts:
        for n, at in enumerate((datetime(2026, 11, 10, tzinfo=UTC), LAST_OF_NOVEMBER, FIRST_OF_DECEMBER,
                                datetime(2026, 12, 20, tzinfo=UTC)), start=1):
            _record(account, f"req_{account.slug}_{n}", at)


def test_retention_drops_a_month_every_account_is_done_with(acme, globex) -> None:
    _four_records_each_around_december_first(acme, globex, retention_days=(3, 5))

    counter = DeleteCounter()
    with connection.execute_wrapper(counter):
        # Cutoffs: acme December 17th noon, globex December 15th noon; both past December 1st.
        deleted = usage_retention_purge(now=datetime(2026, 12, 20, 12, tzinfo=UTC), batch_size=10)
    assert deleted == {"acme": 3, "globex": 3}
    assert "billing_usagerecord_p202611" not in _names()
    assert "billing_usagerecord_p202612" in _names()
    assert sum(counter.rowcounts) == 2  # December 1st's two records, at the edge; November went whole
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["req_acme_4", "req_globex_4"]


def test_a_longer_retention_keeps_the_month_and_the_shorter_one_deletes_its_records(acme, globex) -> None:
    _four_records_each_around_december_first(acme, globex, retention_days=(3, 60))

    counter = DeleteCounter()
    with connection.execute_wrapper(counter):
        deleted = usage_retention_purge(now=datetime(2026, 12, 20, 12, tzinfo=UTC), batch_size=2)
    assert deleted == {"acme": 3}
    assert "billing_usagerecord_p202611" in _names()  # globex's 60 days still reach into November
    assert [count for count in counter.rowcounts if count] == [2, 1]  # in batches of two
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == [
        "req_acme_4", "req_globex_1", "req_globex_2", "req_globex_3", "req_globex_4"]


def test_nothing_to_partition_on_sqlite(acme, monkeypatch) -> None:
    monkeypatch.setattr(connection, "vendor", "sqlite")
    assert usage_partitions() == []
    assert usage_partitions_ensure(now=datetime(2030, 5, 1, tzinfo=UTC)) == []


class _SchemaEditor:
    connection = connection


def _constraint_defs() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = 'billing_usagerecord'::regclass ORDER BY conname")
        return cursor.fetchall()


def test_the_migration_reverses_and_runs_again_keeping_rows_ids_and_names(acme) -> None:
    migration = importlib.import_module("billing.migrations.0023_i20_partition_usage")
    usage_partitions_ensure(now=datetime(2026, 11, 15, tzinfo=UTC))
    records = [_record(acme, "req_nov", LAST_OF_NOVEMBER), _record(acme, "req_dec", FIRST_OF_DECEMBER)]
    partitioned_constraints = _constraint_defs()

    migration.unpartition(None, _SchemaEditor())
    assert usage_partitions() == []
    assert ("billing_usagerecord_pkey", "PRIMARY KEY (id)") in _constraint_defs()
    # A unique constraint of the older ledger (request id alone) gets created_at appended on the way in.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE billing_usagerecord ADD CONSTRAINT billing_usagerecord_request_id_key "
                       "UNIQUE (request_id)")

    migration.partition(None, _SchemaEditor())
    assert [_partition_of(r) for r in records] == ["billing_usagerecord_p202611", "billing_usagerecord_p202612"]
    assert {r.request_id for r in UsageRecord.objects.filter(pk__in=[r.pk for r in records])} == {"req_nov", "req_dec"}
    assert _constraint_defs() == sorted(
        [*partitioned_constraints, ("billing_usagerecord_request_id_key", "UNIQUE (request_id, created_at)")])
    assert _record(acme, "req_after", FIRST_OF_DECEMBER).pk > max(r.pk for r in records)  # ids go on


def test_later_migrations_can_remove_and_add_indexes_by_name() -> None:
    index = next(i for i in UsageRecord._meta.indexes if i.name == "usage_account_time")
    with connection.schema_editor() as editor:
        editor.remove_index(UsageRecord, index)
        editor.add_index(UsageRecord, index)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'usage_account_time'::regclass")
        assert cursor.fetchone()[0] == len(usage_partitions())  # every partition has its share


def test_a_row_stamped_decades_back_makes_no_month_tables_for_the_years_between(acme) -> None:
    now = datetime(2030, 5, 10, tzinfo=UTC)
    ancient = _record(acme, "req_1970", datetime(1970, 1, 2, tzinfo=UTC))
    created = usage_partitions_ensure(now=now, ahead=0)
    assert created[0] == "billing_usagerecord_p202005"  # ten years back, no further
    assert min(p.start for p in usage_partitions() if p.start) == datetime(2020, 5, 1, tzinfo=UTC)
    assert _partition_of(ancient) == "billing_usagerecord_pdefault"  # retention deletes it there in batches

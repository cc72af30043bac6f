"""Label sets: a record's labels stored once per distinct combination, named by a digest that Python (the
ledger) and SQL (bulk seeding, the migration) compute alike."""

from __future__ import annotations

import importlib
import json
import threading
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, connections, transaction

from billing.models import LABEL_FIELDS, UsageLabelSet, UsageRecord
from billing.usage.labels import label_columns, label_set_ids, labels_digest, labels_digest_sql, labels_of
from billing.usage.records import usage_record_batch

from ...migration_steps import loader, migrate_to, migrate_to_latest, migration_ending
from ...support import usage_event

TRICKY = [
    {},
    {"feature": "support-bot", "environment": "production", "tags": {"intent": "refund", "project": "claims"}},
    # Lengths written out keep these apart: "1:a" + "0:" is not "0:" + "1:a".
    {"feature": "a", "environment": ""},
    {"feature": "", "environment": "a"},
    {"feature": "1:a"},
    {"tags": {"a": "bc"}},
    {"tags": {"ab": "c"}},
    # Code-point order of tag names (not the database's collation); multi-byte text counted in characters.
    {"tags": {"Zeta": "1", "alpha": "2", "Ärger": "3", "émoji": "😀", "_": ""}},
    {"model": "gpt-4o", "served_model": "gpt-4o-2024-08-06", "usage_source": "estimated", "route": "cheap",
     "requested_model": "cheap", "downgraded_from": "gpt-4.1", "denied_scope": "tenant_budget",
     "environment": "production", "provider": "openai", "operation": "chat"},
]


def _sql_digest(values: dict) -> str:
    labels = labels_of(values)
    columns = label_columns(labels)
    select = ", ".join(f"%({name})s::{'jsonb' if name == 'tags' else 'text'} AS {name}" for name in LABEL_FIELDS)
    params = {name: json.dumps(value) if name == "tags" else value for name, value in columns.items()}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {labels_digest_sql('v')} FROM (SELECT {select}) AS v", params)  # noqa: S608
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
@pytest.mark.parametrize("values", TRICKY)
def test_python_and_sql_name_the_same_labels_alike(values: dict) -> None:
    assert _sql_digest(values) == str(labels_digest(labels_of(values)))


def test_labels_that_differ_only_in_where_a_field_ends_have_different_digests() -> None:
    digests = {labels_digest(labels_of(values)) for values in TRICKY}
    assert len(digests) == len(TRICKY)
    # Tags in another order are the same labels.
    assert labels_of({"tags": {"b": "1", "a": "2"}}) == labels_of({"tags": {"a": "2", "b": "1"}})


@pytest.mark.django_db
@pytest.mark.parametrize("values", TRICKY)
def test_the_migration_names_labels_as_the_ledger_does(values: dict) -> None:
    migration = importlib.import_module(f"billing.migrations.{migration_ending('billing', '_i20_label_sets')[1]}")
    labels = labels_of(values)
    columns = label_columns(labels)
    assert migration._digest(columns) == labels_digest(labels)
    assert migration._digest_sql("v") == labels_digest_sql("v")


@pytest.mark.django_db
def test_records_share_a_label_set_per_account_and_read_their_labels_back(acme, plans) -> None:
    from billing.models import Account

    globex = Account.objects.create(slug="globex", name="Globex", plan=plans["pro"])
    events = [usage_event(acme.pk, n, feature="chat", tenant=f"org-{n}", tags={"b": "2", "a": "1"}) for n in range(3)]
    events.append(usage_event(acme.pk, 3, feature="chat", tenant="org-1", tags={"a": "1", "b": "2"}))
    events.append(usage_event(acme.pk, 4, feature="chat", tenant="org-1", environment="staging"))
    events.append(usage_event(globex.pk, 5, feature="chat", tags={"a": "1", "b": "2"}))
    assert usage_record_batch(events=events) == 6
    sets = {r.request_id: r.labels_id for r in UsageRecord.objects.all()}
    assert len({sets[f"req_test_{n}"] for n in range(4)}) == 1  # the tenant is the record's, not a label
    assert len(set(sets.values())) == 3  # staging's, and globex's own
    assert UsageLabelSet.objects.filter(account=globex).count() == 1
    record = UsageRecord.objects.get(request_id="req_test_3")
    assert (record.feature, record.tenant, record.tags, record.model) == ("chat", "org-1", {"a": "1", "b": "2"},
                                                                         "gpt-4o-mini")
    # Labels filter and group as columns would.
    assert UsageRecord.objects.filter(account=acme, tenant="org-1", tags__a="1").count() == 2
    assert sorted(UsageRecord.objects.filter(account=acme).values_list("environment", flat=True).distinct()) == [
        "", "staging"]


@pytest.mark.django_db(transaction=True)
def test_two_writers_making_the_same_label_set_at_once_share_it(acme) -> None:
    labels = labels_of({"feature": "race", "tags": {"k": "v"}})
    start, ids, errors = threading.Barrier(4), [], []

    def writer() -> None:
        try:
            start.wait()
            ids.append(label_set_ids([(acme.pk, labels)])[(acme.pk, labels)])
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1 and UsageLabelSet.objects.filter(account=acme, feature="race").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_labels_out_and_back_keeping_every_record(acme) -> None:
    target = migration_ending("billing", "_i20_label_sets")
    before = [dep for dep in loader().get_migration(*target).dependencies if dep[0] == "billing"]
    at = datetime(2026, 11, 30, 23, 59, tzinfo=UTC).timestamp()
    events = [usage_event(acme.pk, n, feature=f"f{n % 2}", tenant="org-1", tags={"n": str(n % 3)},
                          requested_model="cheap", created_at=at + n * 60) for n in range(6)]
    assert usage_record_batch(events=events) == 6
    expected = {r["request_id"]: r for r in UsageRecord.objects.values("id", "request_id", "created_at",
                                                                       *LABEL_FIELDS)}
    try:
        old = migrate_to(before)
        rows = old.get_model("billing", "UsageRecord").objects.values("id", "request_id", "created_at",
                                                                       *LABEL_FIELDS)
        assert {r["request_id"]: r for r in rows} == expected
        migrate_to([target])
    finally:
        migrate_to_latest()
    stored = {r["request_id"]: r for r in UsageRecord.objects.values("id", "request_id", "created_at",
                                                                     *LABEL_FIELDS)}
    assert stored == expected
    assert UsageLabelSet.objects.count() == 6  # f0/f1 × three tag values
    with connection.cursor() as cursor:  # the copy is partitioned again, both months, ids going on
        cursor.execute("SELECT tableoid::regclass::text FROM billing_usagerecord ORDER BY created_at")
        assert {name for (name,) in cursor.fetchall()} == {"billing_usagerecord_p202611",
                                                           "billing_usagerecord_p202612"}
    assert usage_record_batch(events=[usage_event(acme.pk, 99, created_at=at)]) == 1
    assert UsageRecord.objects.get(request_id="req_test_99").pk > max(r["id"] for r in expected.values())


@pytest.mark.django_db(transaction=True)
def test_an_account_goes_with_its_label_sets_and_a_set_in_use_cannot(acme, plans) -> None:
    from billing.models import Account

    globex = Account.objects.create(slug="globex", name="Globex", plan=plans["pro"])
    assert usage_record_batch(events=[usage_event(acme.pk, 1, feature="kept"),
                                      usage_event(globex.pk, 2, feature="gone")]) == 2
    in_use = UsageLabelSet.objects.get(account=acme)
    with pytest.raises(IntegrityError), transaction.atomic():  # the database's own foreign key refuses
        UsageLabelSet.objects.filter(pk=in_use.pk).delete()
    globex.delete()
    assert list(UsageLabelSet.objects.values_list("feature", flat=True)) == ["kept"]
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["req_test_1"]

"""Ledger workers write different accounts at once and take turns on one account (records.py's lock per
account), and several of them draining the same streams store every event exactly once."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection, connections

from billing.models import UsageRecord, UsageRollup
from billing.usage import ledger
from billing.usage.ledger import usage_ingest
from billing.usage.records import LEDGER_LOCK_CLASS, usage_record_batch
from proxy.quota import events_stream_key
from tokonomics.redis_client import sync_redis

from ...support import usage_event

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")


def _holding_the_lock_of(account_id: int) -> psycopg.Connection:
    """Another session that holds one account's ledger lock, as a writer in the middle of its batch does."""
    holder = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s, %s)", [LEDGER_LOCK_CLASS, account_id])
    return holder


def _write_in_thread(events: list[dict]) -> threading.Thread:
    def write() -> None:
        try:
            usage_record_batch(events=events)
        finally:
            connections.close_all()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_one_accounts_writer_waits_while_another_accounts_goes_ahead(transactional_db, acme, globex) -> None:
    holder = _holding_the_lock_of(acme.pk)
    try:
        globex_writer = _write_in_thread([usage_event(globex.pk, 1, prefix="req_par")])
        acme_writer = _write_in_thread([usage_event(acme.pk, 2, prefix="req_par")])
        globex_writer.join(timeout=10)
        assert not globex_writer.is_alive(), "a lock on acme held up globex's records"
        time.sleep(0.3)
        assert acme_writer.is_alive(), "acme's records were written while another writer held acme's lock"
    finally:
        holder.close()  # the lock goes with the session
    acme_writer.join(timeout=10)
    assert not acme_writer.is_alive()
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"req_par_1", "req_par_2"}


def test_several_ledger_workers_store_every_event_once(transactional_db, acme, globex, monkeypatch) -> None:
    import orjson

    # A consumer per worker, as each worker process has (the name is the host and the process id).
    monkeypatch.setattr(ledger, "_consumer_name", lambda: f"test-{threading.get_ident()}")
    client = sync_redis()
    events = [usage_event(account.pk, n, prefix=f"req_many_{account.slug}", feature="f")
              for account in (acme, globex) for n in range(300)]
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(events_stream_key(event["account_id"]), {"e": orjson.dumps(event)})
    pipe.execute()
    stored: list[int] = []
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            while written := usage_ingest(max_seconds=1, batch_size=50):
                stored.append(written)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(3)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    assert not failures
    assert UsageRecord.objects.count() == 600 and sum(stored) == 600
    assert sum(UsageRollup.objects.values_list("requests", flat=True)) == 600  # no record counted twice


def test_a_record_stored_twice_is_refused_as_djangos_integrity_error(transactional_db, acme) -> None:
    """The COPY path's errors are Django's, as bulk_create's were: the ledger isolates a refused event by them
    (and lets a busy database's OperationalError make every event wait)."""
    from django.db import IntegrityError

    from billing.usage import records

    usage_record_batch(events=[usage_event(acme.pk, 1, prefix="req_twice")])
    again = records._record(usage_event(acme.pk, 1, prefix="req_twice"), set())
    with pytest.raises(IntegrityError):
        records._insert([again])
    assert UsageRecord.objects.filter(request_id="req_twice_1").count() == 1

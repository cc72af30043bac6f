"""Ledger workers in parallel: each takes a share of the accounts nobody else holds, and every event is stored
exactly once, with rollups equal to the records."""

from __future__ import annotations

import math
import threading
import time

import orjson
import pytest
from django.db import connection

from billing.models import Account, UsageDeadLetter, UsageRecord
from billing.usage.ledger import GROUP, usage_ingest
from billing.usage.ledger_shares import WORKERS_KEY, owned_streams
from proxy.quota import events_stream_key
from tokonomics.redis_client import sync_redis

from ...support import usage_event
from .test_rollups import assert_rollups_match_records


def _accounts(plans, count: int) -> list[Account]:
    return [Account.objects.create(slug=f"ledger-{n}", name=f"Ledger {n}", plan=plans["pro"]) for n in range(count)]


@pytest.mark.django_db(transaction=True)
def test_three_workers_store_every_event_of_every_account_once(plans) -> None:
    accounts = _accounts(plans, 6)
    client = sync_redis()
    expected = set()
    for account in accounts:
        for n in range(150):
            event = usage_event(account.pk, n, prefix=f"req_par_{account.pk}", feature=f"f{n % 3}",
                                tenant=f"t{n % 4}", tags={"intent": f"i{n % 2}"}, created_at=1_760_000_000.0 + n * 61)
            client.xadd(events_stream_key(account.pk), {"e": orjson.dumps(event)})
            expected.add(event["request_id"])
            if n % 10 == 0:  # delivered twice, as after a worker died between its commit and its XACK
                client.xadd(events_stream_key(account.pk), {"e": orjson.dumps(event)})
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            deadline = time.monotonic() + 60
            while UsageRecord.objects.count() < len(expected) and time.monotonic() < deadline:
                usage_ingest(max_seconds=0.5, batch_size=40)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not errors, [str(e) for e in errors]
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == expected
    assert UsageRecord.objects.count() == len(expected)
    assert not UsageDeadLetter.objects.exists()
    assert_rollups_match_records()
    for account in accounts:
        usage_ingest(max_seconds=0.5)  # the last duplicates, acknowledged
        stream = events_stream_key(account.pk)
        assert client.xlen(stream) == 0
        assert client.xpending(stream, GROUP)["pending"] == 0


@pytest.mark.django_db(transaction=True)
def test_each_worker_holds_its_share_and_no_account_twice(plans) -> None:
    accounts = _accounts(plans, 5)
    streams = {events_stream_key(a.pk).encode(): a.pk for a in accounts}
    client = sync_redis()
    client.zadd(WORKERS_KEY, {"this-host-1-1": time.time()})  # this worker alive too: half each
    share = math.ceil(len(accounts) / 2)
    theirs: list[bytes] = []
    held_by_them, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with owned_streams(client, "another-host-1-1", streams) as owned:
                theirs.extend(owned)
                held_by_them.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    assert held_by_them.wait(10)
    with owned_streams(client, "this-host-1-1", streams) as ours:
        assert len(theirs) == share and 0 < len(ours) <= share
        assert not set(ours) & set(theirs)
        assert set(ours) | set(theirs) == set(streams)
    release.set()
    thread.join(10)
    with owned_streams(client, "this-host-1-1", streams) as ours:  # released: any of them can be taken again
        assert len(ours) == share

"""The usage ledger: usage events leave the proxy through one Redis stream per account and are
written here in batches, idempotent by request id.

An event is acknowledged and deleted only after its batch is committed, so a database outage
leaves the events waiting in Redis; they are written when it returns — nothing lost, nothing
doubled (the request id is unique).

One bad event never holds up the others: a batch the database refuses is split in halves until
what still fails is one event, and that event is set aside as a dead letter (billing/usage/deadletters.py)
with its reason, to be repaired and replayed; the rest of the batch, and every other account, go on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from django.db import InterfaceError, OperationalError, connection
from django.dispatch import Signal
from redis.cluster import RedisCluster
from redis.crc import key_slot

from billing.models import Account
from billing.usage.deadletters import usage_dead_letter_add
from billing.usage.ledger_shares import owned_streams
from billing.usage.records import LedgerEntry, UnstorableEvent, event_decode, usage_record_batch
from proxy.quota import events_stream_key
from tokonomics.redis_client import SyncRedis, sync_redis

log = logging.getLogger(__name__)

# Sent with `events` (the events just stored, decoded) after each batch the ledger takes from the streams:
# alerts checks budget thresholds right after the spend that crossed them is recorded.
usage_recorded = Signal()

GROUP = "ingest"
# A message pending this long with another consumer is presumed orphaned (its worker died).
CLAIM_IDLE_MS = 30_000
_groups_made: set[bytes] = set()

def _consumer_name() -> str:
    # One name a thread: a consumer re-reads its own pending entries first, which must not be another thread's
    # in-flight batch (a Celery worker may run its tasks in threads).
    return f"{socket.gethostname()}-{os.getpid()}-{threading.get_native_id()}"


def usage_events_store(*, entries: list[LedgerEntry]) -> list[dict]:
    """Store what can be stored of `entries` and dead-letter the rest, each with its reason. Raises only
    when the database itself is unreachable (then nothing is set aside: everything waits). Returns the
    events stored (or stored before)."""
    good: list[tuple[LedgerEntry, dict]] = []
    dead: list[tuple[LedgerEntry, UnstorableEvent]] = []
    for entry in entries:
        try:
            good.append((entry, event_decode(entry)))
        except UnstorableEvent as exc:
            dead.append((entry, exc))
    stored = _store_isolating(good, dead)
    if dead:
        usage_dead_letter_add(letters=dead)
    return stored


def _store_isolating(batch: list[tuple[LedgerEntry, dict]], dead: list[tuple[LedgerEntry, UnstorableEvent]]) -> list:
    if not batch:
        return []
    try:
        usage_record_batch(events=[event for _, event in batch])
        return [event for _, event in batch]
    except (OperationalError, InterfaceError):
        raise  # the database is down, or busy (a deadlock, a lock timeout): every event waits, none is to blame
    except Exception as exc:
        _database_answers()  # a database that is down fails every event: that is no reason to set one aside
        if len(batch) == 1:
            reason = exc if isinstance(exc, UnstorableEvent) else UnstorableEvent(f"{type(exc).__name__}: {exc}")
            log.error("usage event %s set aside: %s", batch[0][1].get("request_id"), reason)
            dead.append((batch[0][0], reason))
            return []
    # Halves, then quarters…: a batch of n with one bad event costs about 2·log2(n) more writes.
    middle = len(batch) // 2
    return _store_isolating(batch[:middle], dead) + _store_isolating(batch[middle:], dead)


def _database_answers() -> None:
    """Raises unless the database answers a trivial query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def usage_record_batch_from_events(*, events: list[bytes]) -> int:
    """A proxy's in-memory fallback: its own events, straight to the database, bad ones set aside."""
    return len(usage_events_store(entries=[LedgerEntry(raw=e) for e in events]))


def _ensure_groups(client: SyncRedis, streams: list[bytes]) -> None:
    for stream in streams:
        if stream in _groups_made:
            continue
        try:
            client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        _groups_made.add(stream)


def _write(client: SyncRedis, batches: Iterable[Any], stream_accounts: dict[bytes, int]) -> int:
    """Write [(stream, [(id, fields)…])…] to the database, then ack and delete those events."""
    ledger_entries, done = [], []
    for stream, entries in batches:
        for entry_id, fields in entries:
            if fields:  # None: an entry deleted while pending
                ledger_entries.append(LedgerEntry(raw=fields.get(b"e", b""), stream=stream.decode(),
                                                  entry_id=entry_id.decode(), account_id=stream_accounts.get(stream)))
            done.append((stream, entry_id))
    if not done:
        return 0
    events = usage_events_store(entries=ledger_entries)
    usage_recorded.send(sender=LedgerEntry, events=events)
    by_stream: dict[bytes, list[bytes]] = {}
    for stream, entry_id in done:
        by_stream.setdefault(stream, []).append(entry_id)
    pipe = client.pipeline(transaction=False)
    for stream, entry_ids in by_stream.items():  # one XACK and one XDEL a stream, of all its entries
        pipe.xack(stream, GROUP, *entry_ids)
        pipe.xdel(stream, *entry_ids)
    pipe.execute()
    return len(events)


def usage_ingest(*, max_seconds: float = 5.0, batch_size: int = 1000, client: SyncRedis | None = None) -> int:
    """Drain every account's usage stream into the database. Safe to run in several workers at once:
    the consumer group hands each event to one of them. Returns the number of events written."""
    client = client or sync_redis()
    try:
        return _ingest(client, max_seconds, batch_size)
    except redis.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        # Redis lost its data (a restart without persistence): make the groups again and go on.
        _groups_made.clear()
        return _ingest(client, max_seconds, batch_size)


def _read(client: SyncRedis, consumer: str, streams: list[bytes], since: str, count: int) -> list[Any]:
    """XREADGROUP of every stream from `since`: one command on a server; on a cluster one per slot, since a
    command's keys must share a slot there (each account's stream has a slot of its own), so one per slot,
pipelined."""
    if not isinstance(client, RedisCluster):
        return list(client.xreadgroup(GROUP, consumer, {s: since for s in streams}, count=count) or [])
    by_slot: dict[int, list[bytes]] = {}
    for stream in streams:
        by_slot.setdefault(key_slot(stream), []).append(stream)
    # redis-py sends each master its commands in one round trip (its cluster pipeline() is untyped).
    pipe = client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
    for same_slot in by_slot.values():
        pipe.xreadgroup(GROUP, consumer, {s: since for s in same_slot}, count=count)
    return [batch for batches in pipe.execute() for batch in batches or []]


def _ingest(client: SyncRedis, max_seconds: float, batch_size: int) -> int:
    stream_accounts = {events_stream_key(pk).encode(): pk for pk in Account.objects.values_list("pk", flat=True)}
    if not stream_accounts:
        return 0
    _ensure_groups(client, list(stream_accounts))
    consumer = _consumer_name()
    written, first = 0, True
    deadline = time.monotonic() + max_seconds
    while True:
        with owned_streams(client, consumer, stream_accounts) as streams:
            if first and streams:  # what this consumer read before and failed to write, then what dead ones left
                written += _write(client, _read(client, consumer, streams, "0", batch_size), stream_accounts)
                for stream in streams:
                    _, claimed, *_ = client.xautoclaim(stream, GROUP, consumer, CLAIM_IDLE_MS, "0-0",
                                                       count=batch_size)
                    written += _write(client, [(stream, claimed)], stream_accounts)
            batches = _read(client, consumer, streams, ">", batch_size) if streams else []
            if batches:
                written += _write(client, batches, stream_accounts)
        first = False
        if not batches or time.monotonic() >= deadline:
            break
    if written:
        log.info("usage_ingest wrote %d usage records", written)
    return written

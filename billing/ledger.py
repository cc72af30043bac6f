"""The usage ledger: usage events leave the proxy through one Redis stream per account and are
written here in batches, idempotent by request id.

An event is acknowledged and deleted only after its batch is committed, so a database outage
leaves the events waiting in Redis; they are written when it returns — nothing lost, nothing
doubled (the request id is unique).

One bad event never holds up the others: a batch the database refuses is split in halves until
what still fails is one event, and that event is set aside as a dead letter (billing/deadletters.py)
with its reason, to be repaired and replayed; the rest of the batch, and every other account, go on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import redis
from django.db import InterfaceError, OperationalError, connection, transaction

from billing.models import Account, UsageRecord
from billing.rollups import usage_rollup_add
from proxy.budgets import ingested_key
from proxy.models import ApiKey
from proxy.quota import events_stream_key
from proxy.usage_bounds import usage_event_clean
from tokonomics.redis_client import sync_redis

log = logging.getLogger(__name__)

GROUP = "ingest"
LEDGER_LOCK_ID = 7_146_390_001  # pg_advisory_xact_lock key of the ledger's writers
# A message pending this long with another consumer is presumed orphaned (its worker died).
CLAIM_IDLE_MS = 30_000
_groups_made: set[bytes] = set()

RECORD_FIELDS = (
    "feature", "tenant", "environment", "tags", "provider", "model", "served_model", "operation", "input_tokens",
    "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "latency_ms", "status_code",
    "denied_scope", "streamed", "usage_source", "enforced",
)


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class UnstorableEvent(Exception):
    """An event that can never be stored as it is (its reason is the message)."""

    def __init__(self, message: str, kind: str = "rejected") -> None:
        super().__init__(message)
        self.kind = kind  # a label of tokonomics_ledger_dead_letters_total


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """An event as read: from an account's stream (`stream`, `entry_id`, the stream's `account_id`), or
    from a proxy's in-memory fallback (all three empty)."""

    raw: bytes
    stream: str = ""
    entry_id: str = ""
    account_id: int | None = None


def event_decode(entry: LedgerEntry) -> dict:
    """The entry's event, cleaned (an older proxy may not have); UnstorableEvent when it is none."""
    try:
        event = orjson.loads(entry.raw)
    except orjson.JSONDecodeError as exc:
        raise UnstorableEvent(f"not JSON: {exc}", "malformed") from None
    if not isinstance(event, dict):
        raise UnstorableEvent(f"not a JSON object but {type(event).__name__}", "malformed")
    if not isinstance(event.get("request_id"), str) or not event["request_id"]:
        raise UnstorableEvent("no request_id", "malformed")
    if isinstance(event.get("account_id"), bool) or not isinstance(event.get("account_id"), int):
        raise UnstorableEvent(f"account_id is not an integer: {event.get('account_id')!r:.40}", "malformed")
    if entry.account_id is not None and event["account_id"] != entry.account_id:
        # One account's stream never writes another account's records.
        raise UnstorableEvent(f"account {event['account_id']} in the stream of account {entry.account_id}",
                              "account")
    return usage_event_clean(event=event)


def _record(event: dict, known_keys: set[int]) -> UsageRecord:
    cost = event.get("cost_usd")
    key_id = event.get("key_id")
    return UsageRecord(
        request_id=event["request_id"],
        account_id=event["account_id"],
        key_id=key_id if key_id in known_keys else None,
        cost_usd=Decimal(cost) if cost is not None else None,
        created_at=datetime.fromtimestamp(event["created_at"], UTC),
        **{name: event[name] for name in RECORD_FIELDS if name in event},
    )


def usage_record_batch(*, events: Iterable[dict]) -> int:
    """Store usage records and add them to the hourly rollups; events already stored (same request
    id) are skipped, so a batch can be written twice safely. Returns the number of new records."""
    events = [e for e in events if e.get("request_id")]
    if not events:
        return 0
    accounts = set(Account.objects.filter(pk__in={e["account_id"] for e in events}).values_list("pk", flat=True))
    for event in events:
        if event["account_id"] not in accounts:
            raise UnstorableEvent(f"account {event['account_id']} does not exist", "account")
    wanted_keys = {e["key_id"] for e in events if e.get("key_id")}
    known_keys = set(ApiKey.objects.filter(pk__in=wanted_keys).values_list("pk", flat=True))
    records = {e["request_id"]: _record(e, known_keys) for e in events}
    with transaction.atomic():
        _serialize_writers()
        stored = set(UsageRecord.objects.filter(request_id__in=records).values_list("request_id", flat=True))
        new = [r for request_id, r in records.items() if request_id not in stored]
        UsageRecord.objects.bulk_create(new, batch_size=1000)
        usage_rollup_add(records=new)
    _announce({r.account_id for r in new})
    return len(new)


def _announce(account_ids: set[int]) -> None:
    """Move each account's live token, so open dashboards know to refresh (and only then)."""
    if not account_ids:
        return
    pipe = sync_redis().pipeline(transaction=False)
    for account_id in account_ids:
        pipe.incr(ingested_key(account_id))
    try:
        pipe.execute()
    except redis.RedisError:
        log.warning("could not announce new usage to live dashboards")


def _serialize_writers() -> None:
    # Two writers of the same events (a re-claimed batch) must not both add them to the rollups.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK_ID])
    # SQLite: transactions already take the write lock at BEGIN (transaction_mode IMMEDIATE).


def usage_events_store(*, entries: list[LedgerEntry]) -> list[dict]:
    """Store what can be stored of `entries` and dead-letter the rest, each with its reason. Raises only
    when the database itself is unreachable (then nothing is set aside: everything waits). Returns the
    events stored (or stored before)."""
    from billing.deadletters import usage_dead_letter_add

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


def _ensure_groups(client: redis.Redis, streams: list[bytes]) -> None:
    for stream in streams:
        if stream in _groups_made:
            continue
        try:
            client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        _groups_made.add(stream)


def _write(client: redis.Redis, batches: list, stream_accounts: dict[bytes, int]) -> int:
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
    _check_alerts(events)
    pipe = client.pipeline(transaction=False)
    for stream, entry_id in done:
        pipe.xack(stream, GROUP, entry_id)
        pipe.xdel(stream, entry_id)
    pipe.execute()
    return len(events)


def _check_alerts(events: list[dict]) -> None:
    """Budget thresholds are checked right after the spend that crossed them is recorded."""
    from alerts.evaluate import Touched, budget_thresholds_check

    by_account: dict[int, list[dict]] = {}
    for event in events:
        if event.get("cost_usd") not in (None, "0", "0E-9"):
            by_account.setdefault(event["account_id"], []).append(event)
    for account_id, batch in by_account.items():
        touched = Touched(
            tenants=frozenset(e.get("tenant", "") for e in batch),
            features=frozenset(e.get("feature", "") for e in batch),
            key_ids=frozenset(e["key_id"] for e in batch if e.get("key_id")),
        )
        try:
            budget_thresholds_check(account_id=account_id, touched=touched)
        except Exception:
            # Alerts must never hold up the ledger; the next batch checks the same counters again.
            log.exception("budget threshold check failed for account %s", account_id)


def usage_ingest(*, max_seconds: float = 5.0, batch_size: int = 1000, client: redis.Redis | None = None) -> int:
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


def _ingest(client: redis.Redis, max_seconds: float, batch_size: int) -> int:
    stream_accounts = {events_stream_key(pk).encode(): pk for pk in Account.objects.values_list("pk", flat=True)}
    streams = list(stream_accounts)
    if not streams:
        return 0
    _ensure_groups(client, streams)
    consumer = _consumer_name()
    written = 0
    # First what this consumer read before and failed to write, then what dead consumers left.
    written += _write(client, client.xreadgroup(GROUP, consumer, {s: "0" for s in streams}, count=batch_size) or [],
                      stream_accounts)
    for stream in streams:
        _, claimed, *_ = client.xautoclaim(stream, GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=batch_size)
        written += _write(client, [(stream, claimed)], stream_accounts)
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        batches = client.xreadgroup(GROUP, consumer, {s: ">" for s in streams}, count=batch_size)
        if not batches:
            break
        written += _write(client, batches, stream_accounts)
    if written:
        log.info("usage_ingest wrote %d usage records", written)
    return written

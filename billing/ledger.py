"""The usage ledger: usage events leave the proxy through one Redis stream per account and are
written here in batches, idempotent by request id.

An event is acknowledged and deleted only after its batch is committed, so a database outage
leaves the events waiting in Redis; they are written when it returns — nothing lost, nothing
doubled (the request id is unique).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import redis
from django.db import connection, transaction

from billing.models import Account, UsageRecord
from billing.rollups import usage_rollup_add
from proxy.models import ApiKey
from proxy.quota import account_prefix, events_stream_key
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
    wanted_keys = {e["key_id"] for e in events if e.get("key_id")}
    known_keys = set(ApiKey.objects.filter(pk__in=wanted_keys).values_list("pk", flat=True))
    records = {e["request_id"]: _record(e, known_keys) for e in events if e["account_id"] in accounts}
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
        pipe.incr(f"{account_prefix(account_id)}:ingested")
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


def usage_record_batch_from_events(*, events: list[bytes]) -> int:
    return usage_record_batch(events=[orjson.loads(e) for e in events])


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


def _write(client: redis.Redis, batches: list) -> int:
    """Write [(stream, [(id, fields)…])…] to the database, then ack and delete those events."""
    events, done = [], []
    for stream, entries in batches:
        for entry_id, fields in entries:
            if fields and b"e" in fields:
                events.append(orjson.loads(fields[b"e"]))
            done.append((stream, entry_id))
    if not done:
        return 0
    usage_record_batch(events=events)
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
    streams = [events_stream_key(pk).encode() for pk in Account.objects.values_list("pk", flat=True)]
    if not streams:
        return 0
    _ensure_groups(client, streams)
    consumer = _consumer_name()
    written = 0
    # First what this consumer read before and failed to write, then what dead consumers left.
    written += _write(client, client.xreadgroup(GROUP, consumer, {s: "0" for s in streams}, count=batch_size) or [])
    for stream in streams:
        _, claimed, *_ = client.xautoclaim(stream, GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=batch_size)
        written += _write(client, [(stream, claimed)])
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        batches = client.xreadgroup(GROUP, consumer, {s: ">" for s in streams}, count=batch_size)
        if not batches:
            break
        written += _write(client, batches)
    if written:
        log.info("usage_ingest wrote %d usage records", written)
    return written

"""Usage events decoded and stored as records (idempotent by request id), added to the rollups, and
announced to open dashboards. Both the ledger (billing/usage/ledger.py) and dead-letter replay
(billing/usage/deadletters.py) store through here."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import redis
from django.db import connection, transaction
from django.db.models import JSONField
from psycopg.types.json import Jsonb

from billing.models import Account, UsageRecord
from billing.usage.rollups import usage_rollup_add
from proxy.budgets import ingested_key
from proxy.models import ApiKey
from proxy.usage_bounds import usage_event_clean
from tokonomics.redis_client import sync_redis

log = logging.getLogger(__name__)

# pg_advisory_xact_lock(LEDGER_LOCK_CLASS, account) is held by whoever writes an account's records: writers of
# different accounts go in parallel (several ledger workers scale), two writers of one account take turns.
LEDGER_LOCK_CLASS = 714_639_001
_INT4_KEYS = 2**31 - 1  # the two-key form takes int4s: accounts past it share a key (and only take turns)

RECORD_FIELDS = (
    "session", "session_name", "session_git",
    "feature", "tenant", "environment", "tags", "provider", "model", "served_model", "operation", "input_tokens",
    "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "latency_ms", "status_code",
    "denied_scope", "streamed", "usage_source", "enforced",
)


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
    provider_cost = event.get("provider_cost_usd")
    key_id = event.get("key_id")
    return UsageRecord(
        request_id=event["request_id"],
        account_id=event["account_id"],
        key_id=key_id if key_id in known_keys else None,
        cost_usd=Decimal(cost) if cost is not None else None,
        reserved_usd=Decimal(reserved) if (reserved := event.get("reserved_usd")) is not None else None,
        provider_cost_usd=Decimal(provider_cost) if provider_cost is not None else None,
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
        _serialize_writers({e["account_id"] for e in events})
        stored = set(UsageRecord.objects.filter(request_id__in=records).values_list("request_id", flat=True))
        new = [r for request_id, r in records.items() if request_id not in stored]
        _insert(new)
        usage_rollup_add(records=new)
    _announce({r.account_id for r in new})
    return len(new)


def _insert(records: list[UsageRecord]) -> None:
    """On PostgreSQL through COPY: the ledger's hot loop, where bulk_create spent most of its time preparing
    each of 29 fields a row in Python. The request id's unique index still refuses a record stored twice."""
    if connection.vendor != "postgresql" or not records:
        UsageRecord.objects.bulk_create(records, batch_size=1000)
        return
    fields = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]
    json_fields = {f.attname for f in fields if isinstance(f, JSONField)}
    names = [f.attname for f in fields]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)  # concrete: never None
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    # Django wraps execute()'s errors in its own classes, not copy()'s: the ledger tells a busy or absent
    # database (OperationalError: every event waits) from a refused event by them.
    with connection.wrap_database_errors, connection.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for record in records:
            values = record.__dict__
            copy.write_row([Jsonb(values[name]) if name in json_fields else values[name] for name in names])


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


def _serialize_writers(account_ids: set[int]) -> None:
    """Two writers of the same events (a re-claimed batch) must not both add them to the rollups: an event's
    writers hold its account's lock. Taken in one order (ascending), so two batches never deadlock."""
    if connection.vendor == "postgresql":
        keys = sorted({account_id % _INT4_KEYS for account_id in account_ids})
        with connection.cursor() as cursor:
            # unnest yields the array in order and nothing sorts after it: the locks are taken in that order.
            cursor.execute("SELECT count(pg_advisory_xact_lock(%s, key)) FROM unnest(%s::int[]) AS key",
                           [LEDGER_LOCK_CLASS, keys])
    # SQLite: transactions already take the write lock at BEGIN (transaction_mode IMMEDIATE).

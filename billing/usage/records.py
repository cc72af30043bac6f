"""Usage events decoded and stored as records (idempotent by request id), added to the rollups, and
announced to open dashboards. Both the ledger (billing/usage/ledger.py) and dead-letter replay
(billing/usage/deadletters.py) store through here."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
import redis
from django.db import connection, models, transaction

from billing.models import Account, UsageLabelSet, UsageRecord
from billing.usage.labels import Labels, label_columns, label_set_ids, labels_of
from billing.usage.rollups import ROLLUP_RECORD_COLUMNS, rollup_add_statements, rollup_source_sql, usage_rollup_add
from proxy.budgets import ingested_key
from proxy.models import ApiKey
from proxy.usage_bounds import usage_event_clean
from tokonomics.redis_client import sync_redis

log = logging.getLogger(__name__)

LEDGER_LOCK_ID = 7_146_390_001  # pg_advisory_xact_lock key of the ledger's writers

# An event's fields stored in its record as they are; its LABEL_FIELDS go to its label set.
RECORD_FIELDS = (
    "session", "session_name", "session_git", "tenant", "input_tokens", "output_tokens", "cached_input_tokens",
    "cache_write_tokens", "reasoning_tokens", "latency_ms", "status_code", "denied_scope", "streamed", "cache_hit",
    "enforced", "attempts", "guardrail_hits",
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


def _record(event: dict, known_keys: set[int], labels: Labels, labels_id: int) -> UsageRecord:
    cost = event.get("cost_usd")
    provider_cost = event.get("provider_cost_usd")
    key_id = event.get("key_id")
    record = UsageRecord(
        request_id=event["request_id"],
        account_id=event["account_id"],
        key_id=key_id if key_id in known_keys else None,
        labels_id=labels_id,
        cost_usd=Decimal(cost) if cost is not None else None,
        reserved_usd=Decimal(reserved) if (reserved := event.get("reserved_usd")) is not None else None,
        provider_cost_usd=Decimal(provider_cost) if provider_cost is not None else None,
        routing_saved_usd=Decimal(saved) if (saved := event.get("routing_saved_usd")) is not None else None,
        cache_saved_usd=Decimal(cached) if (cached := event.get("cache_saved_usd")) is not None else None,
        created_at=datetime.fromtimestamp(event["created_at"], UTC),
        **{name: event[name] for name in RECORD_FIELDS if name in event},
    )
    for name, value in label_columns(labels).items():  # as a record read back has them (the rollups')
        setattr(record, name, value)
    return record


# Every column the ledger writes, in the COPY's order; what an event leaves out gets the model's default.
COPY_COLUMNS = ("request_id", "account_id", "key_id", "labels_id", "cost_usd", "reserved_usd", "provider_cost_usd",
                "routing_saved_usd", "cache_saved_usd", "created_at", *RECORD_FIELDS)
_JSON_COLUMNS = frozenset(f.name for f in UsageRecord._meta.concrete_fields if isinstance(f, models.JSONField))
_DEFAULTS = {f.name: f.get_default() for f in UsageRecord._meta.concrete_fields if f.name in RECORD_FIELDS}
_STAGE = "usage_ledger_stage"
# Dropped at commit: nothing outlives the transaction, so a pooler that hands the connection on (PgBouncer in
# transaction mode) never sees it.
_STAGE_SQL = (f"CREATE TEMPORARY TABLE {_STAGE} ON COMMIT DROP AS "  # noqa: S608 (our names only)
              f"SELECT {', '.join(COPY_COLUMNS)} FROM {UsageRecord._meta.db_table} WITH NO DATA")
_COPY_SQL = f"COPY {_STAGE} ({', '.join(COPY_COLUMNS)}) FROM STDIN"


def _row(event: dict, known_keys: set[int], labels_id: int) -> tuple:
    key_id = event.get("key_id")
    values: list[Any] = [event["request_id"], event["account_id"], key_id if key_id in known_keys else None,
                         labels_id, event.get("cost_usd"), event.get("reserved_usd"), event.get("provider_cost_usd"),
                         event.get("routing_saved_usd"), event.get("cache_saved_usd"),
                         datetime.fromtimestamp(event["created_at"], UTC)]
    for name in RECORD_FIELDS:
        value = event.get(name, _DEFAULTS[name])
        values.append(orjson.dumps(value).decode() if name in _JSON_COLUMNS else value)
    return tuple(values)


@cache
def _insert_sql() -> str:
    columns = ", ".join(COPY_COLUMNS)
    upserts = "".join(f", rollup_{n} AS ({sql})" for n, sql in enumerate(rollup_add_statements("labelled")))
    return (f"WITH fresh AS (INSERT INTO {UsageRecord._meta.db_table} ({columns}) "  # noqa: S608 (our names)
            f"SELECT {columns} FROM {_STAGE} ORDER BY request_id ON CONFLICT DO NOTHING "
            f"RETURNING {', '.join(ROLLUP_RECORD_COLUMNS)}), "
            f"labelled AS ({rollup_source_sql('fresh', UsageLabelSet._meta.db_table)}){upserts} "
            "SELECT account_id, count(*) FROM fresh GROUP BY account_id")


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
    known_keys = set(ApiKey.objects.filter(pk__in=wanted_keys).values_list("pk", flat=True)) if wanted_keys else set()
    if connection.vendor == "postgresql":
        stored = _store_copied(events, known_keys)
    else:
        stored = _store_models(events, known_keys)
    _announce(set(stored))
    return sum(stored.values())


def _labelled(events: list[dict]) -> list[tuple[dict, Labels, int]]:
    """Each event with its labels and the id of their label set (made if new)."""
    labels = [(e["account_id"], labels_of(e)) for e in events]
    ids = label_set_ids(labels)
    return [(e, item[1], ids[item]) for e, item in zip(events, labels, strict=True)]


def _store_models(events: list[dict], known_keys: set[int]) -> dict[int, int]:
    """Any database: the records as models, the rollups added in Python. {account id: records stored}."""
    records = {e["request_id"]: _record(e, known_keys, labels, labels_id) for e, labels, labels_id in _labelled(events)}
    with transaction.atomic():
        _serialize_writers()
        stored = set(UsageRecord.objects.filter(request_id__in=records).values_list("request_id", flat=True))
        new = [r for request_id, r in records.items() if request_id not in stored]
        UsageRecord.objects.bulk_create(new, batch_size=1000)
        usage_rollup_add(records=new)
    return dict(Counter(r.account_id for r in new))


def _store_copied(events: list[dict], known_keys: set[int]) -> dict[int, int]:
    """PostgreSQL: the rows COPYed into a transaction's scratch table, then one statement inserts those not
    stored yet (ON CONFLICT DO NOTHING on the unique request id) and adds exactly the ones it inserted to every
    rollup. No lock: two writers of the same events both insert, the database lets one of them have each row,
    and each adds only its own rows (in request id order, so that they never wait on each other in a cycle).
    {account id: records stored}."""
    # The last of events with one request id, as _store_models keeps it.
    rows = [_row(event, known_keys, labels_id)
            for event, _, labels_id in {e[0]["request_id"]: e for e in _labelled(events)}.values()]
    with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
        cursor.execute(_STAGE_SQL)
        with cursor.cursor.copy(_COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(_insert_sql())
        stored = dict(cursor.fetchall())
        cursor.execute(f"DROP TABLE {_STAGE}")  # now, not at commit: the caller's transaction may go on
        return stored


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

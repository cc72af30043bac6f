"""Hourly rollups of usage, added to as records are ingested (one upsert per cell)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.db import connection

from billing.models import UsageRecord, UsageRollup, UsageTagRollup

CELL = ("account_id", "hour", "feature", "tenant", "environment", "provider", "model", "key_id", "status_code")
SUMS = ("requests", "streamed_requests", "estimated_requests", "unknown_cost_requests", "input_tokens",
        "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd",
        "latency_ms_total")


def _cells(records: Iterable[UsageRecord]) -> tuple[dict, dict]:
    cells: dict[tuple, list] = defaultdict(lambda: [0] * 9 + [Decimal(0), 0])
    tags: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    for r in records:
        hour = r.created_at.replace(minute=0, second=0, microsecond=0)
        cell = (r.account_id, hour, r.feature, r.tenant, r.environment, r.provider, r.model, r.key_id or 0,
                r.status_code)
        sums = cells[cell]
        sums[0] += 1
        sums[1] += r.streamed
        sums[2] += r.usage_source == UsageRecord.Source.ESTIMATED
        sums[3] += r.cost_usd is None and r.status_code < 400
        sums[4] += r.input_tokens
        sums[5] += r.output_tokens
        sums[6] += r.cached_input_tokens
        sums[7] += r.cache_write_tokens
        sums[8] += r.reasoning_tokens
        sums[9] += r.cost_usd or 0
        sums[10] += r.latency_ms
        for tag, value in (r.tags or {}).items():
            tag_sums = tags[(r.account_id, hour, tag[:60], str(value)[:200])]
            tag_sums[0] += 1
            tag_sums[1] += r.cost_usd or 0
    return cells, tags


def _upsert(table: str, keys: tuple[str, ...], sums: tuple[str, ...], rows: list[tuple]) -> None:
    if not rows:
        return
    columns = ", ".join(keys + sums)
    placeholders = ", ".join(["%s"] * (len(keys) + len(sums)))
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    sql = (f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
           f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def usage_rollup_add(*, records: list[UsageRecord]) -> None:
    """Add newly stored records to their hourly cells. Call once per record, inside the transaction
    that stored it (the ledger guarantees that)."""
    cells, tags = _cells(records)
    _upsert(UsageRollup._meta.db_table, CELL, SUMS, [(*cell, *sums) for cell, sums in cells.items()])
    _upsert(UsageTagRollup._meta.db_table, ("account_id", "hour", "tag", "value"), ("requests", "cost_usd"),
            [(*cell, *sums) for cell, sums in tags.items()])

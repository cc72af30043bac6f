"""Rollups of usage, added to as records are ingested (one upsert per cell), and read by every view.

Each record is added to an hour row and a (UTC) day row of three rollups — every dimension (UsageRollup),
every dimension but the tenant (UsageSummaryRollup), and the tenant alone (UsageTenantRollup) — and, per
tag, to an hour row of UsageTagRollup. A few hundred tenants multiply the cells of the first twentyfold, so
a view reads the narrowest rollup that keeps the dimensions it needs, and the whole days of its range from
day rows: a month of a busy account is then a few thousand rows, not millions (rollup_rows).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, models

from billing.models import (
    UsageDayRollup,
    UsageRecord,
    UsageRollup,
    UsageSummaryDayRollup,
    UsageSummaryRollup,
    UsageTagRollup,
    UsageTenantDayRollup,
    UsageTenantRollup,
)

SUMS = ("requests", "streamed_requests", "estimated_requests", "unknown_cost_requests", "input_tokens",
        "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd",
        "latency_ms_total", "routing_saved_usd", "downgraded_requests", "cache_hits", "cache_saved_usd")
COST, UNKNOWN_COST = SUMS.index("cost_usd"), SUMS.index("unknown_cost_requests")
INPUT_TOKENS, OUTPUT_TOKENS = SUMS.index("input_tokens"), SUMS.index("output_tokens")
TAG_SUMS = ("requests", "cost_usd", "tokens")


@dataclass(frozen=True)
class Rollup:
    hourly: type[models.Model]  # cells start at `hour`
    daily: type[models.Model]  # cells start at `day`, midnight UTC
    dimensions: tuple[str, ...]  # record attributes of a cell, besides the account and the time


# Narrowest first: a view reads the first that keeps its dimensions.
ROLLUPS = (
    Rollup(UsageSummaryRollup, UsageSummaryDayRollup,
           ("feature", "environment", "provider", "model", "key_id", "status_code")),
    Rollup(UsageTenantRollup, UsageTenantDayRollup, ("tenant", "status_code")),
    Rollup(UsageRollup, UsageDayRollup, ("feature", "tenant", "environment", "provider", "model", "key_id",
                                         "status_code")),
)
TAG_CELL = ("account_id", "hour", "tag", "value")


def hour_start(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def day_start(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _sums(r: UsageRecord) -> list:
    return [1, int(r.streamed), int(r.usage_source == UsageRecord.Source.ESTIMATED),
            int(r.cost_usd is None and r.status_code < 400), r.input_tokens, r.output_tokens, r.cached_input_tokens,
            r.cache_write_tokens, r.reasoning_tokens, r.cost_usd or Decimal(0), r.latency_ms,
            r.routing_saved_usd or Decimal(0), int(bool(r.downgraded_from)), int(r.cache_hit),
            r.cache_saved_usd or Decimal(0)]


def _cells(changes: Iterable[tuple[UsageRecord, list]]) -> tuple[dict, dict]:
    """{table: {cell: sums}} and {tag cell: [requests, cost, tokens]}, from (record, what it adds to its cells)."""
    cells: dict[type[models.Model], dict[tuple, list]] = defaultdict(dict)
    tags: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0), 0])
    for r, sums in changes:
        attributes = {"feature": r.feature, "tenant": r.tenant, "environment": r.environment,
                      "provider": r.provider, "model": r.model, "key_id": r.key_id or 0,
                      "status_code": r.status_code}
        hour = hour_start(r.created_at)
        for rollup in ROLLUPS:
            values = tuple(attributes[d] for d in rollup.dimensions)
            for model, start in ((rollup.hourly, hour), (rollup.daily, day_start(hour))):
                cell = (r.account_id, start, *values)
                current = cells[model].get(cell)
                if current is None:
                    cells[model][cell] = list(sums)
                else:
                    for n, value in enumerate(sums):
                        current[n] += value
        for tag, value in (r.tags or {}).items():
            tag_sums = tags[(r.account_id, hour, tag[:60], str(value)[:200])]
            tag_sums[0] += sums[0]
            tag_sums[1] += sums[COST]
            tag_sums[2] += sums[INPUT_TOKENS] + sums[OUTPUT_TOKENS]
    return cells, tags


def cell_columns(model: type[models.Model]) -> tuple[str, ...]:
    rollup = next(r for r in ROLLUPS if model in (r.hourly, r.daily))
    return ("account_id", "hour" if model is rollup.hourly else "day", *rollup.dimensions)


Write = Callable[[type[models.Model], tuple[str, ...], tuple[str, ...], list[tuple]], None]


def _upsert(model: type[models.Model], keys: tuple[str, ...], sums: tuple[str, ...], rows: list[tuple]) -> None:
    """Add `rows` (cell values, then sums) to their cells, creating the missing ones. Sorted, so writers that
    ever overlap lock cells in one order."""
    if not rows:
        return
    rows, table = sorted(rows), model._meta.db_table
    conflict = (f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array a column: a batch's thousand cells are one statement of twenty parameters, several
            # times cheaper than a thousand rows of parameters.
            arrays = ", ".join(f"%s::{model._meta.get_field(c).db_type(connection)}[]" for c in keys + sums)
            cursor.execute(f"INSERT INTO {table} ({', '.join(keys + sums)}) SELECT * FROM unnest({arrays}) {conflict}",
                           [list(column) for column in zip(*rows, strict=True)])
            return
        row = f"({', '.join(['%s'] * (len(keys) + len(sums)))})"
        for start in range(0, len(rows), 500):  # 10,000 parameters a statement at most
            chunk = rows[start:start + 500]
            cursor.execute(f"INSERT INTO {table} ({', '.join(keys + sums)}) VALUES {', '.join([row] * len(chunk))} "
                           f"{conflict}", [value for r in chunk for value in r])


def _adjust(model: type[models.Model], keys: tuple[str, ...], sums: tuple[str, ...], rows: list[tuple]) -> None:
    # An UPDATE, not an upsert: PostgreSQL checks a new row's constraints (sums >= 0) before its conflict.
    if not rows:
        return
    sql = (f"UPDATE {model._meta.db_table} SET {', '.join(f'{c} = {c} + %s' for c in sums)} "
           f"WHERE {' AND '.join(f'{k} = %s' for k in keys)}")
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(*row[len(keys):], *row[:len(keys)]) for row in rows])


def _write(changes: tuple[dict, dict], write: Write) -> None:
    cells, tags = changes
    for model, model_cells in cells.items():
        write(model, cell_columns(model), SUMS, [(*cell, *sums) for cell, sums in model_cells.items()])
    write(UsageTagRollup, TAG_CELL, TAG_SUMS, [(*cell, *sums) for cell, sums in tags.items()])


def usage_rollup_add(*, records: list[UsageRecord]) -> None:
    """Add newly stored records to their cells. Call once per record, inside the transaction that stored
    it (the ledger guarantees that)."""
    _write(_cells((r, _sums(r)) for r in records), _upsert)


def usage_rollup_reprice(*, changes: list[tuple[UsageRecord, Decimal | None]]) -> None:
    """Move the cells of re-priced records by their change in cost: `changes` holds each record (its new
    cost set) with its cost before. Call inside the transaction that saves the new costs."""
    deltas = []
    for r, before in changes:
        sums: list = [0] * len(SUMS)
        sums[COST] = (r.cost_usd or Decimal(0)) - (before or Decimal(0))
        priced_call = r.status_code < 400
        sums[UNKNOWN_COST] = int(r.cost_usd is None and priced_call) - int(before is None and priced_call)
        deltas.append((r, sums))
    _write(_cells(deltas), _adjust)


# What each sum adds for a record, in SQL over freshly stored rows: the same as _sums above (one test holds
# the two to each other), for the ledger's PostgreSQL path, which adds a batch to every cell in one statement.
SUMS_SQL = {
    "requests": "count(*)",
    "streamed_requests": "count(*) FILTER (WHERE streamed)",
    "estimated_requests": f"count(*) FILTER (WHERE usage_source = '{UsageRecord.Source.ESTIMATED}')",
    "unknown_cost_requests": "count(*) FILTER (WHERE cost_usd IS NULL AND status_code < 400)",
    "input_tokens": "sum(input_tokens)",
    "output_tokens": "sum(output_tokens)",
    "cached_input_tokens": "sum(cached_input_tokens)",
    "cache_write_tokens": "sum(cache_write_tokens)",
    "reasoning_tokens": "sum(reasoning_tokens)",
    "cost_usd": "coalesce(sum(cost_usd), 0)",
    "latency_ms_total": "sum(latency_ms)",
    "routing_saved_usd": "coalesce(sum(routing_saved_usd), 0)",
    "downgraded_requests": "count(*) FILTER (WHERE downgraded_from <> '')",
    "cache_hits": "count(*) FILTER (WHERE cache_hit)",
    "cache_saved_usd": "coalesce(sum(cache_saved_usd), 0)",
}
DIMENSIONS_SQL = {"key_id": "coalesce(key_id, 0)"}  # any other dimension is its column
# The columns of a stored record that the SQL above reads, and those it reads from the record's label set.
ROLLUP_RECORD_COLUMNS = ("account_id", "created_at", "labels_id", "tenant", "key_id", "status_code", "streamed",
                         "cost_usd", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                         "reasoning_tokens", "latency_ms", "routing_saved_usd", "cache_hit", "cache_saved_usd")
ROLLUP_LABEL_COLUMNS = ("feature", "environment", "provider", "model", "tags", "usage_source", "downgraded_from")


def rollup_source_sql(records: str, label_sets: str) -> str:
    """A SELECT of what rollup_add_statements reads: the rows of `records` (ROLLUP_RECORD_COLUMNS) with the
    labels of their label sets from `label_sets` (a table, or a CTE of the sets a statement inserted)."""
    return (f"SELECT {', '.join(f'r.{c}' for c in ROLLUP_RECORD_COLUMNS)}, "  # noqa: S608 (our names only)
            f"{', '.join(f'l.{c}' for c in ROLLUP_LABEL_COLUMNS)} FROM {records} AS r "
            f"JOIN {label_sets} AS l ON l.id = r.labels_id")


assert set(SUMS_SQL) == set(SUMS)


def upsert_sql(table: str, keys: Iterable[str], sums: Iterable[str], select: str) -> str:
    """INSERT the rows of `select` (cell values, then sums) into `table`, adding them to existing cells."""
    keys, sums = list(keys), list(sums)
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    return (f"INSERT INTO {table} ({', '.join(keys + sums)}) {select} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")


def rollup_add_statements(source: str) -> list[str]:
    """One upsert per rollup table (hour and day of each, then tags) adding the rows of `source` (a CTE or
    table with the columns rollup_source_sql gives) to their cells. Each orders its cells, so that writers
    that overlap lock them in one order, as _upsert does."""
    statements = []
    for rollup in ROLLUPS:
        for model, unit in ((rollup.hourly, "hour"), (rollup.daily, "day")):
            cell = ["account_id", f"date_trunc('{unit}', created_at, 'UTC')",
                    *(DIMENSIONS_SQL.get(d, d) for d in rollup.dimensions)]
            positions = ", ".join(str(n + 1) for n in range(len(cell)))
            statements.append(upsert_sql(
                model._meta.db_table, cell_columns(model), SUMS,
                f"SELECT {', '.join(cell)}, {', '.join(SUMS_SQL[s] for s in SUMS)} FROM {source} "
                f"GROUP BY {positions} ORDER BY {positions}"))
    statements.append(upsert_sql(
        UsageTagRollup._meta.db_table, TAG_CELL, TAG_SUMS,
        "SELECT account_id, date_trunc('hour', created_at, 'UTC'), left(t.key, 60), left(t.value, 200), count(*), "
        f"coalesce(sum(cost_usd), 0), sum(input_tokens + output_tokens) FROM {source}, "
        "jsonb_each_text(tags) AS t GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"))
    return statements


def rollup_for(dimensions: Iterable[str]) -> Rollup:
    """The narrowest rollup keeping every one of `dimensions` (record attributes: key_id, not key)."""
    wanted = set(dimensions)
    return next(r for r in ROLLUPS if wanted <= set(r.dimensions))


@dataclass(frozen=True)
class RollupRows:
    """Rows of one rollup covering a range, in up to two parts (day rows, hour rows), each annotated with
    its cells' start as `at`. Filter them like a queryset; sum them with sums()."""

    rollup: Rollup
    parts: tuple[models.QuerySet, ...]

    def filter(self, *args: Any, **kwargs: Any) -> RollupRows:
        return RollupRows(self.rollup, tuple(part.filter(*args, **kwargs) for part in self.parts))

    def annotate(self, **expressions: Any) -> RollupRows:
        return RollupRows(self.rollup, tuple(part.annotate(**expressions) for part in self.parts))

    def sums(self, *group_by: str, **aggregates: Any) -> list[dict[str, Any]]:
        """One dict per distinct `group_by` (one in all when none): its values and the `aggregates`,
        computed by the database per part and added up here."""
        merged: dict[tuple, dict[str, Any]] = {}
        for part in self.parts:
            rows = (part.values(*group_by).annotate(**aggregates).order_by() if group_by
                    else [part.aggregate(**aggregates)])
            for row in rows:
                key = tuple(row[name] for name in group_by)
                total = merged.get(key)
                if total is None:
                    merged[key] = dict(row)
                    continue
                for name in aggregates:
                    if row[name] is not None:
                        total[name] = row[name] if total[name] is None else total[name] + row[name]
        return list(merged.values()) or ([] if group_by else [dict.fromkeys(aggregates)])


def rollup_rows(*, account_id: int, dimensions: Iterable[str], first: datetime | None, end: datetime | None,
                hourly: bool = False) -> RollupRows:
    """The rows of the narrowest rollup keeping `dimensions` that cover every hour from `first` up to `end`
    (whole hours; None: no bound): whole UTC days from its day rows, unless `hourly`, and the hours before
    and after them from its hour rows — the same sums as the hour rows alone."""
    rollup = rollup_for(dimensions)
    hours = rollup.hourly._default_manager.filter(account_id=account_id).annotate(at=models.F("hour"))

    def hour_range(low: datetime | None, high: datetime | None) -> models.Q:
        return models.Q(**({"hour__gte": low} if low else {}), **({"hour__lt": high} if high else {}))

    first_day = day_start(first + timedelta(hours=23)) if first else None
    end_day = day_start(end) if end else None
    if hourly or (first_day and end_day and first_day >= end_day):
        return RollupRows(rollup, (hours.filter(hour_range(first, end)),))
    days = rollup.daily._default_manager.filter(account_id=account_id, **({"day__gte": first_day} if first_day else {}),
                                                **({"day__lt": end_day} if end_day else {}))
    parts = [days.annotate(at=models.F("day"))]
    edges = [hour_range(low, high) for low, high in ((first, first_day), (end_day, end)) if low and high and low < high]
    if edges:
        parts.append(hours.filter(edges[0] | edges[1] if len(edges) == 2 else edges[0]))
    return RollupRows(rollup, tuple(parts))

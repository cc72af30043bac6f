"""Read-side queries of usage records and their aggregates, each scoped to one account."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour

from billing.models import Account, UsageRecord
from billing.usage.rollups import rollup_rows
from proxy.pricing import NANO_USD

GroupBy = Literal["feature", "tenant", "model", "provider", "key", "environment", "day", "hour"]
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


@dataclass(frozen=True)
class UsageFilters:
    """Narrows usage to the calls matching every attribute given (None: any value)."""

    feature: str | None = None
    tenant: str | None = None
    model: str | None = None
    provider: str | None = None
    key_id: int | None = None
    environment: str | None = None
    status: str | None = None  # an exact code ("429") or a class ("4xx")

    def exact(self) -> dict[str, str | int]:
        """The filters that match one value of a column (records and rollups name the columns alike)."""
        values = {"feature": self.feature, "tenant": self.tenant, "model": self.model, "provider": self.provider,
                  "key_id": self.key_id, "environment": self.environment}
        return {name: value for name, value in values.items() if value is not None}


def _usage_records(
    *, account: Account, since: datetime | None, until: datetime | None, filters: UsageFilters
) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(account=account)
    if since is not None:
        records = records.filter(created_at__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=until)
    records = records.filter(**filters.exact())
    return records.filter(_status_condition(filters.status)) if filters.status is not None else records


def usage_record_list(
    *,
    account: Account,
    since: datetime | None,
    until: datetime | None,
    filters: UsageFilters,
    after: tuple[datetime, int] | None = None,
    limit: int,
) -> list[UsageRecord]:
    """Up to `limit` records, newest first; `after` is the (created_at, id) of the last record already seen.

    `since` is inclusive, `until` exclusive.
    """
    records = _usage_records(account=account, since=since, until=until, filters=filters).select_related("key")
    if after is not None:
        created_at, record_id = after
        records = records.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=record_id))
    return list(records.order_by("-created_at", "-id")[:limit])


@dataclass(frozen=True)
class UsageAggregate:
    """Usage summed over one group. `cost_usd` covers priced calls only; `unknown_cost_requests` counts the rest."""

    group: str | None
    key_id: int | None
    requests: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal
    unknown_cost_requests: int


def usage_aggregate_list(
    *, account: Account, group_by: GroupBy, since: datetime | None, until: datetime | None, filters: UsageFilters
) -> list[UsageAggregate]:
    """Usage of `account` between `since` (inclusive) and `until` (exclusive), summed per `group_by` value.

    Days and hours are calendar days and hours in the account's time zone. Time groups come in order;
    other groups by cost, dearest first. A group of None holds the calls without that attribute.

    Summed by usage_sum_list, as the dashboards are. Like them, `unknown_cost_requests` counts the calls
    below status 400 without a price (a refused or failed call owes nothing).
    """
    key_names = dict(account.api_keys.values_list("id", "name"))
    if filters.key_id is not None and filters.key_id not in key_names:
        return []  # a deleted key's calls lost their key (SET_NULL): none match it any more
    time_group = group_by if group_by in ("day", "hour") else None
    column = "key_id" if group_by == "key" else group_by
    sums: dict[object, dict[str, Any]] = {}
    _add(sums, [{**row, "group": row["group"] if time_group else row[column]} for row in usage_sum_list(
        account=account, since=since, until=until, filters=filters, columns=() if time_group else (column,),
        time_group=time_group)])
    if group_by == "key":  # the rollups keep "no key" as 0, and a deleted key's id
        merged: dict[object, dict[str, Any]] = {}
        _add(merged, [{**row, "group": group if group in key_names else None} for group, row in sums.items()])
        sums = merged
    rows = list(sums.values())
    if group_by in ("day", "hour"):
        rows.sort(key=lambda row: row["group"])
    else:
        rows.sort(key=lambda row: (-(row["cost_usd"] or 0), row["group"] in ("", None), str(row["group"] or "")))
    return [
        UsageAggregate(
            group=_group_label(group_by, row["group"], key_names),
            key_id=row["group"] if group_by == "key" else None,
            requests=row["requests"],
            cost_usd=(row["cost_usd"] or Decimal(0)).quantize(NANO_USD),
            unknown_cost_requests=row["unknown_cost_requests"],
            **{name: int(row[name] or 0) for name in TOKEN_FIELDS},
        )
        for row in rows
    ]


AGGREGATE_FIELDS = ("requests", "unknown_cost_requests", "cost_usd", *TOKEN_FIELDS)
# Beside the aggregates: what the dashboards also add up (what routing and the cache saved: proxy/cache_steps.py).
SUM_FIELDS = (*AGGREGATE_FIELDS, "latency_ms_total", "routing_saved_usd", "downgraded_requests", "cache_hits",
              "cache_saved_usd")
_ZERO_SUMS = {name: Decimal(0) if name.endswith("_usd") else 0 for name in SUM_FIELDS}


def usage_sum_list(
    *, account: Account, since: datetime | None, until: datetime | None, filters: UsageFilters,
    columns: tuple[str, ...] = (), time_group: Literal["day", "hour"] | None = None,
) -> list[dict[str, Any]]:
    """Usage of `account` from `since` (inclusive) to `until` (exclusive), exactly, summed per combination of
    `columns` (record columns: feature, tenant, model, provider, key_id — 0 for no key —, environment,
    status_code) and, with `time_group`, per day or hour of the account's time zone (as "group"). Each row has
    its columns and SUM_FIELDS. The one aggregator behind the REST API's aggregates and the dashboards.

    Read from the rollups — the whole hours of the range, whole days from day rows where they line up
    with the groups — and from the records only for the minutes before its first and after its last whole
    hour, so a year of usage costs a few thousand rows.
    """
    names = (*columns, "group") if time_group else columns
    sums: dict[tuple, dict[str, Any]] = {}
    aligned = _zone_offsets(account.timezone)
    first = _hour_ceiling(since) if since is not None else None
    end = until.replace(minute=0, second=0, microsecond=0) if until is not None else None
    scope: dict[str, Any] = {"account": account, "filters": filters, "names": names, "time_group": time_group}
    if (time_group and not aligned) or (first and end and first >= end):
        # A zone off the whole hour splits rollup hours between its own hours; a range inside an hour has none.
        _sum_into(sums, names, _record_groups(since=since, until=until, **scope))
    else:
        # UTC day rows make the zone's days only where it keeps UTC's time all year.
        hourly = time_group == "hour" or (time_group == "day" and aligned != {0})
        _sum_into(sums, names, _rollup_groups(first=first, end=end, hourly=hourly, **scope))
        if since is not None and first is not None and since < first:
            _sum_into(sums, names, _record_groups(since=since, until=first, **scope))
        if until is not None and end is not None and end < until:
            _sum_into(sums, names, _record_groups(since=end, until=until, **scope))
    return list(sums.values())


def _sum_into(sums: dict[tuple, dict[str, Any]], names: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        group = tuple(row[name] for name in names)
        total = sums.setdefault(group, {**{name: row[name] for name in names}, **_ZERO_SUMS})
        for name in SUM_FIELDS:
            total[name] += row[name] or 0  # a sum over no priced call is None


def _add(sums: dict[object, dict[str, Any]], rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        group = row["group"]
        if group in sums:
            for name in AGGREGATE_FIELDS:
                sums[group][name] = (sums[group][name] or 0) + (row[name] or 0)
        else:
            sums[group] = {"group": group, **{name: row[name] for name in AGGREGATE_FIELDS}}


def _group_expression(group_by: GroupBy, tz: zoneinfo.ZoneInfo, time_field: str) -> Any:
    return {
        "feature": F("feature"),
        "tenant": F("tenant"),
        "model": F("model"),
        "provider": F("provider"),
        "key": F("key_id"),
        "environment": F("environment"),
        "day": TruncDay(time_field, tzinfo=tz),
        "hour": TruncHour(time_field, tzinfo=tz),
    }[group_by]


def _rollup_groups(
    *, account: Account, filters: UsageFilters, names: tuple[str, ...], time_group: Literal["day", "hour"] | None,
    first: datetime | None, end: datetime | None, hourly: bool,
) -> list[dict[str, Any]]:
    exact = filters.exact()
    columns = [name for name in names if name != "group"]
    rows = rollup_rows(account_id=account.pk, dimensions=[*exact, "status_code", *columns], first=first, end=end,
                       hourly=hourly)
    rows = rows.filter(**exact)
    if filters.status is not None:
        rows = rows.filter(_status_condition(filters.status))
    if time_group:
        rows = rows.annotate(group=_group_expression(time_group, zoneinfo.ZoneInfo(account.timezone), "at"))
    return rows.sums(*names, **{name: Sum(name) for name in SUM_FIELDS})


def _record_groups(
    *, account: Account, filters: UsageFilters, names: tuple[str, ...], time_group: Literal["day", "hour"] | None,
    since: datetime | None, until: datetime | None,
) -> list[dict[str, Any]]:
    records = _usage_records(account=account, since=since, until=until, filters=filters)
    if time_group:
        records = records.annotate(group=_group_expression(time_group, zoneinfo.ZoneInfo(account.timezone),
                                                           "created_at"))
    sums = {
        "requests": Count("id"),
        "unknown_cost_requests": Count("id", filter=Q(cost_usd__isnull=True, status_code__lt=400)),
        "cost_usd": Sum("cost_usd"),
        "latency_ms_total": Sum("latency_ms"),
        "routing_saved_usd": Sum("routing_saved_usd"),
        "downgraded_requests": Count("id", filter=~Q(downgraded_from="")),
        "cache_hits": Count("id", filter=Q(cache_hit=True)),
        "cache_saved_usd": Sum("cache_saved_usd"),
        **{name: Sum(name) for name in TOKEN_FIELDS},
    }
    if names:
        rows = list(records.values(*names).annotate(**sums).order_by())
    else:
        # One total. values() without names would group by the primary key (a row a record), which PostgreSQL
        # refuses on the partitioned table: its key is (id, created_at), so id alone decides no other column.
        total = records.aggregate(**sums)
        rows = [total] if total["requests"] else []
    for row in rows:
        if row.get("key_id", 0) is None:
            row["key_id"] = 0  # as the rollups keep "no key"
    return rows


def _status_condition(status: str) -> Q:
    """An exact code ("429") or a class ("4xx")."""
    if status.endswith("xx"):
        low = int(status[0]) * 100
        return Q(status_code__gte=low, status_code__lt=low + 100)
    return Q(status_code=int(status))


def _hour_ceiling(moment: datetime) -> datetime:
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if hour == moment else hour + timedelta(hours=1)


@functools.cache
def _zone_offsets(name: str) -> set[int] | None:
    """The zone's distinct UTC offsets in seconds (sampled twice a month, 2000-2040), or None when one is
    not a whole hour: then its hours and days cannot be put together from UTC hours."""
    zone = zoneinfo.ZoneInfo(name)
    offsets = {int(offset.total_seconds())
               for year in range(2000, 2041) for month in range(1, 13) for day in (1, 16)
               if (offset := datetime(year, month, day, tzinfo=UTC).astimezone(zone).utcoffset()) is not None}
    return offsets if all(offset % 3600 == 0 for offset in offsets) else None


def _group_label(group_by: GroupBy, value: object, key_names: dict[int, str]) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date().isoformat() if group_by == "day" else value.isoformat()
    if group_by == "key" and isinstance(value, int):
        return key_names.get(value, str(value))
    return str(value)

"""What the dashboards show, read from the rollups (never by scanning raw records, so a page stays fast at
tens of millions of records) and, for budgets, from the live Redis counters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import QuerySet, Sum

from billing.models import Account, Budget, UsageLabelSet, UsageRecord, UsageTagRollup
from billing.usage.rollups import RollupRows, rollup_rows
from billing.usage.selectors import UsageFilters, usage_sum_list
from proxy.budgets import BudgetPeriod, ingested_key, nanos_to_usd, per_value
from proxy.models import ProviderEndpoint
from proxy.periods import period_bounds
from proxy.pricing import catalogue_price_table
from proxy.quota import ValueSpend, budget_values_list
from tokonomics.redis_client import sync_redis

DIMENSIONS = ("feature", "tenant", "model", "provider", "key", "environment", "tag")
FILTERABLE = ("feature", "tenant", "model", "provider", "key", "environment")
# A filtered tag breakdown adds up the matching records themselves (the tag rollup keeps no other
# dimension): about 10 µs a call, so the page does it for this many calls at most, and a CSV for ten times
# as many; past that it says so (a wrong figure would be worse).
TAG_CALLS_ON_PAGE = 20_000
TAG_CALLS_IN_CSV = 200_000
# Ranges longer than this read their whole days from day rows, and chart spend per day.
DAILY_AFTER_HOURS = 72
CELL_DIMENSIONS = ("feature", "model", "provider", "key", "environment")  # all but the tenant: see cells()
SUM_FIELDS = ("requests", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
              "reasoning_tokens", "cost_usd", "unknown_cost_requests", "latency_ms_total", "routing_saved_usd",
              "downgraded_requests", "cache_hits", "cache_saved_usd")


# The longest `?last=`: ten years of days (or hours). Past it, and for dates Python cannot shift by a day,
# the range is refused (RangeError, a 400) instead of overflowing datetime arithmetic.
MAX_RANGE_DAYS = 3660


class RangeError(ValueError):
    """A date range the dashboards cannot show."""


@dataclass(frozen=True)
class Range:
    """[since, until), both in UTC (the rollups' hours and days are UTC's); pages show them in the account's zone."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "since", self.since.astimezone(UTC))
        object.__setattr__(self, "until", self.until.astimezone(UTC))

    @property
    def hours(self) -> float:
        return (self.until - self.since).total_seconds() / 3600

    @property
    def last_moment(self) -> datetime:
        """The last instant inside the range: its day is what the "To" field shows (`until` itself is the
        next midnight for a range given in days, and showing it moved the range a day on every Apply)."""
        return self.until - timedelta(microseconds=1)

    @property
    def previous(self) -> Range:
        """The range of the same length just before this one: what "vs previous period" compares with."""
        return Range(self.since - (self.until - self.since), self.since)


# `?last=` words for ranges that start at a local midnight of the account.
CALENDAR_RANGES = ("today", "mtd")


def range_parse(params: dict[str, str], now: datetime | None = None, tz: tzinfo = UTC) -> Range:
    """`?since=2026-11-01&until=2026-11-23` (dates or datetimes, in the account's time zone `tz` unless they
    name one; `until` includes its whole day), `?last=7d`, `?last=today` or `?last=mtd`; default 30 days."""
    now = now or datetime.now(UTC)
    last = params.get("last", "")
    if last in CALENDAR_RANGES:
        midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        # A zone's offset follows the wall time: the 1st's midnight has its own offset, even across DST.
        return Range(midnight.replace(day=1) if last == "mtd" else midnight, now)
    if last.endswith(("d", "h")) and last[:-1].isascii() and last[:-1].isdigit():
        amount = int(last[:-1])
        if amount > (MAX_RANGE_DAYS if last.endswith("d") else MAX_RANGE_DAYS * 24):
            raise RangeError(f"last={last}: the longest range is {MAX_RANGE_DAYS}d")
        delta = timedelta(days=amount) if last.endswith("d") else timedelta(hours=amount)
        return Range(now - delta, now)
    since = _parse(params.get("since"), tz) or now - timedelta(days=30)
    until = _parse(params.get("until"), tz, end_of_day=True) or now
    if not all(datetime(2, 1, 1, tzinfo=UTC) < moment < datetime(9998, 1, 1, tzinfo=UTC) for moment in (since, until)):
        raise RangeError("since and until must lie between the years 2 and 9998: that range cannot be shown")
    if until <= since:
        until = since + timedelta(days=1)
    return Range(since, until)


def _parse(value: str | None, tz: tzinfo, *, end_of_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    if end_of_day and len(value) == 10 and parsed.year < 9998:
        parsed += timedelta(days=1)  # on the wall clock: the next local midnight, even across a DST change
    return parsed


def key_id(value: str) -> int:
    """A `?key=` filter as a key id; anything but ASCII digits ("²" is a digit to str.isdigit) matches none."""
    return int(value) if value.isascii() and value.isdigit() else -1


@dataclass(frozen=True)
class KeyFilter:
    """A `?key=` filter as the page shows it (`label`) and as queries match it (`id`, -1 for none)."""

    id: int
    label: str
    known: bool


def key_filter_get(*, account: Account, value: str) -> KeyFilter:
    """`?key=` by the key's name (unique in an account), else by id; only ever a key of `account`. A number
    that is no live key of the account still matches the calls of a deleted key of that id, which the
    rollups keep (and the key card links to)."""
    named = account.api_keys.filter(name=value).values_list("id", flat=True).first()
    if named is not None:
        return KeyFilter(named, value, True)
    if value.isascii() and value.isdigit() and int(value) < 2**63:
        name = account.api_keys.filter(pk=int(value)).values_list("name", flat=True).first()
        return KeyFilter(int(value), name if name is not None else f"deleted key #{value}", True)
    return KeyFilter(-1, value, False)


def rollups(account: Account, period: Range, filters: dict[str, str], needs: tuple[str, ...] = (),
            hourly: bool = False) -> RollupRows:
    """The rollup rows of every hour from the one `since` falls in up to `until`, matching `filters`, from the
    narrowest rollup that keeps the dimensions filtered on and `needs`; whole days come from day rows unless
    `hourly` (the same sums from a fraction of the rows)."""
    dimensions = ["key_id" if name == "key" else name for name in (*filters, *needs) if name in FILTERABLE]
    first = period.since.replace(minute=0, second=0, microsecond=0)
    end = period.until.replace(minute=0, second=0, microsecond=0)
    if end < period.until:
        end += timedelta(hours=1)  # the hour `until` falls in counts
    rows = rollup_rows(account_id=account.pk, dimensions=dimensions, first=first, end=end, hourly=hourly)
    for name, value in filters.items():
        if name == "key":
            rows = rows.filter(key_id=key_id(value))
        elif name in FILTERABLE:
            rows = rows.filter(**{name: value})
    return rows


def usage_filters(filters: dict[str, str]) -> UsageFilters:
    fields: dict[str, Any] = {("key_id" if name == "key" else name): key_id(value) if name == "key" else value
                              for name, value in filters.items() if name in FILTERABLE}
    return UsageFilters(**fields)


def cells(account: Account, period: Range, filters: dict[str, str]) -> list[dict[str, Any]]:
    """The range's sums per combination of every dimension but the tenant (and the tenant, when the page is
    filtered on one): a few hundred rows, from which the totals, the savings and five breakdowns are added
    up here instead of by a query each. Exact to the second, by the aggregator the REST API uses."""
    columns = tuple(dict.fromkeys(["key_id" if d == "key" else d for d in (*CELL_DIMENSIONS, *filters)
                                   if d in FILTERABLE] + ["status_code"]))
    return usage_sum_list(account=account, since=period.since, until=period.until, filters=usage_filters(filters),
                          columns=columns)


def totals(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The range's sums. Denied calls (429s: budgets, plan and rate limits) ran nothing, so the per-call
    figures leave them out: "per call" and the average latency are of the calls that ran (None when none did)."""
    out: dict[str, Any] = {f: sum((c[f] for c in cells), 0) for f in SUM_FIELDS}
    denied = [c for c in cells if c["status_code"] == 429]
    out["denied"] = sum(c["requests"] for c in denied)
    out["errors"] = sum(c["requests"] for c in cells if c["status_code"] >= 500)
    out["ran"] = out["requests"] - out["denied"]
    out["cost_per_request"] = (out["cost_usd"] / out["ran"]) if out["ran"] else None
    ran_latency = out["latency_ms_total"] - sum(c["latency_ms_total"] for c in denied)
    out["avg_latency_ms"] = int(ran_latency / out["ran"]) if out["ran"] else None
    out["tokens"] = out["input_tokens"] + out["output_tokens"]
    out["saved_usd"] = out["cache_saved_usd"] + out["routing_saved_usd"]  # the savings card's total
    return out


def totals_compare(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """The previous period's spend and calls, and the change of each in percent (None from nothing)."""
    def change(now: Decimal | int, before: Decimal | int) -> int | None:
        return round(100 * (Decimal(now) - Decimal(before)) / Decimal(before)) if before else None

    return {"cost_usd": previous["cost_usd"], "requests": previous["requests"],
            "cost_change": change(current["cost_usd"], previous["cost_usd"]),
            "requests_change": change(current["requests"], previous["requests"])}


def cached_savings(account: Account, cells: list[dict[str, Any]]) -> Decimal:
    """What cached input tokens saved against paying the full input price for them."""
    pricing = dict(ProviderEndpoint.objects.filter(account=account).values_list("slug", "pricing_provider"))
    cached: dict[tuple[str, str], int] = {}
    for c in cells:
        if c["cached_input_tokens"]:
            cached[(c["provider"], c["model"])] = cached.get((c["provider"], c["model"]), 0) + c["cached_input_tokens"]
    saved = Decimal(0)
    for (provider, model), tokens in cached.items():
        table = catalogue_price_table(provider_id=pricing.get(provider) or None, base_url=None, model=model)
        if table is not None:
            saved += tokens * (table.input_per_mtok - table.cached_input_per_mtok) / 1_000_000
    return saved.quantize(Decimal("0.000001"))


def breakdown(account: Account, dimension: str, period: Range, filters: dict[str, str], limit: int = 50,
              cells: list[dict[str, Any]] | None = None, tag_calls_most: int | None = None) -> list[dict] | None:
    """Rows of (value, requests, tokens, cost, share) for one dimension, dearest first; added up from
    `cells` when they keep the dimension. None for the tags of a filtered range of more than `tag_calls_most`
    calls (TAG_CALLS_ON_PAGE unless given; see tag_breakdown)."""
    if dimension == "tag":
        if filters:
            calls = sum(c["requests"] for c in (cells if cells is not None else usage_sum_list(
                account=account, since=period.since, until=period.until, filters=usage_filters(filters))))
            if calls > (TAG_CALLS_ON_PAGE if tag_calls_most is None else tag_calls_most):
                return None
        rows = tag_breakdown(account, period, filters, limit)
    else:
        column = "key_id" if dimension == "key" else dimension
        if cells is not None and (not cells or column in cells[0]):
            sums: dict[Any, dict[str, Any]] = {}
            for c in cells:
                group = sums.setdefault(c[column], {column: c[column], "requests_": 0, "cost": Decimal(0),
                                                    "tokens": 0})
                group["requests_"] += c["requests"]
                group["cost"] += c["cost_usd"]
                group["tokens"] += c["input_tokens"] + c["output_tokens"]
            grouped = list(sums.values())
        else:
            grouped = [{column: r[column], "requests_": r["requests"], "cost": r["cost_usd"] or Decimal(0),
                        "tokens": (r["input_tokens"] or 0) + (r["output_tokens"] or 0)}
                       for r in usage_sum_list(account=account, since=period.since, until=period.until,
                                               filters=usage_filters(filters), columns=(column,))]
        grouped.sort(key=lambda r: (-r["cost"], -r["requests_"]))
        names = dict(account.api_keys.values_list("id", "name")) if dimension == "key" else {}
        rows = []
        for r in grouped[:limit]:
            raw = r[column]
            # A key's calls are linked by its name (`?key=prod-bot`), a deleted key's by its id.
            rows.append({"value": names.get(raw, raw) if dimension == "key" else raw,
                         "label": names.get(raw, "(deleted key)" if raw else "(no key)")
                         if dimension == "key" else (raw or "(none)"),
                         "requests": r["requests_"], "cost_usd": r["cost"], "tokens": r["tokens"]})
    total = sum((r["cost_usd"] or 0) for r in rows) or Decimal(1)
    for r in rows:
        r.setdefault("label", r["value"])
        r["share"] = int(100 * (r["cost_usd"] or 0) / total)
    return rows


def tag_breakdown(account: Account, period: Range, filters: dict[str, str], limit: int) -> list[dict]:
    """Calls, tokens and cost per tag value, dearest first. Unfiltered, from the hourly tag rollup; filtered,
    from the records of the range that match (the tag rollup keeps no other dimension), read by the same
    indexes as the call list."""
    if not filters:
        hour_floor = period.since.replace(minute=0, second=0, microsecond=0)
        tag_rows = (UsageTagRollup.objects.filter(account=account, hour__gte=hour_floor, hour__lt=period.until)
                    .values("tag", "value").annotate(requests_=Sum("requests"), cost=Sum("cost_usd"),
                                                      tokens_=Sum("tokens"))
                    .order_by("-cost", "-requests_")[:limit])
        return [{"value": f"{r['tag']}={r['value']}", "requests": r["requests_"], "cost_usd": r["cost"],
                 "tokens": r["tokens_"]} for r in tag_rows]
    records = UsageRecord.objects.filter(account=account, created_at__gte=period.since, created_at__lt=period.until)
    for name, value in usage_filters(filters).exact().items():
        records = records.filter(**{name: value})
    inner, params = records.values("id").query.sql_with_params()
    table, label_sets = UsageRecord._meta.db_table, UsageLabelSet._meta.db_table
    each = "jsonb_each_text(l.tags)" if connection.vendor == "postgresql" else "json_each(l.tags)"
    # The tables are the models' and the inner query Django's own; every value is a parameter.
    sql = (f"SELECT kv.key, kv.value, count(*), sum(r.input_tokens + r.output_tokens), "  # noqa: S608
           f"sum(coalesce(r.cost_usd, 0)) FROM {table} r JOIN {label_sets} l ON l.id = r.labels_id "
           f"CROSS JOIN {each} kv WHERE r.id IN ({inner}) GROUP BY 1, 2 ORDER BY 5 DESC, 3 DESC LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        found = cursor.fetchall()
    return [{"value": f"{tag}={value}", "requests": n, "tokens": tokens, "cost_usd": cost}
            for tag, value, n, tokens, cost in found]


def spend_series(account: Account, period: Range, filters: dict[str, str], tz: tzinfo = UTC) -> list[dict]:
    """Spend per hour (ranges up to 3 days) or per day of the account's time zone `tz`, every bucket present,
    for the chart. UTC days come from day rows; another zone's days are added up from hour rows."""
    daily = period.hours > DAILY_AFTER_HOURS
    rows = rollups(account, period, filters, hourly=not (daily and str(tz) in ("UTC", "Etc/UTC")))

    def bucket(at: datetime) -> datetime:
        if not daily:
            return at  # rows and buckets are UTC hours (a +05:30 zone's labels read :30)
        local = at.astimezone(tz)
        # Rebuilt from the wall time, so every bucket is its day's midnight with that day's own offset.
        return datetime(local.year, local.month, local.day, tzinfo=tz)

    buckets: dict[datetime, Decimal] = {}
    for row in rows.sums("at", cost=Sum("cost_usd")):
        key = bucket(row["at"])
        buckets[key] = buckets.get(key, Decimal(0)) + (row["cost"] or 0)
    cursor = bucket(period.since.astimezone(UTC).replace(minute=0, second=0, microsecond=0))
    series: list[dict[str, Any]] = []
    while cursor < period.until and len(series) < 400:
        series.append({"at": cursor, "cost_usd": buckets.get(cursor, Decimal(0))})
        # An aware datetime adds a day on its wall clock: 23 or 25 hours across a DST change.
        cursor += timedelta(days=1) if daily else timedelta(hours=1)
    peak = max((b["cost_usd"] for b in series), default=Decimal(0)) or Decimal(1)
    for b in series:
        b["height"] = int(100 * b["cost_usd"] / peak)
    return series


def budget_status(account: Account, now: datetime | None = None, *, top: int = 5,
                  budgets: Iterable[Budget] | None = None) -> list[dict]:
    """Spend this period against every budget (or `budgets`), from the live Redis counters: settled spend,
    what calls in flight and proxy workers' leases hold reserved (`leased_usd`: the leases' part), what
    remains for new calls (a call is admitted only if its reservation fits), and the end-of-period projection.
    A '*' budget shows its `top` biggest spenders, and how many values it counts (`values`)."""
    now = now or datetime.now(UTC)
    client = sync_redis()
    out = []
    key_names: dict[str, str] | None = None
    for budget in Budget.objects.filter(account=account) if budgets is None else budgets:
        start, end = period_bounds(budget.period, account.timezone, now)
        period = BudgetPeriod.of(account.pk, budget.pk, start)
        values = 0
        if per_value(budget):  # one counter per tenant / feature / key seen this period
            spenders = budget_values_list(client, period=period, limit=top)
            values = int(client.zcard(period.values_key))
        else:
            settled, reserved, leased = client.hmget(period.base, "s", "r", "l")
            spenders = [ValueSpend("", period.base, int(settled or 0), int(reserved or 0), int(leased or 0))]
        if budget.scope == Budget.Scope.KEY and per_value(budget) and key_names is None:
            key_names = {str(pk): name for pk, name in account.api_keys.values_list("pk", "name")}
        elapsed = now.timestamp() - start.timestamp()  # timestamps: right across DST changes too
        fraction = 1.0 if end is None else min(1.0, max(elapsed / (end.timestamp() - start.timestamp()), 1e-6))
        for spender in spenders or [ValueSpend("", period.base, 0, 0)]:
            spent_usd = nanos_to_usd(spender.settled)
            reserved_usd = nanos_to_usd(spender.reserved)
            projected = spent_usd / Decimal(fraction) if end is not None else spent_usd
            limit = budget.limit_usd or Decimal("0.000001")
            label = spender.value
            if budget.scope == Budget.Scope.KEY and key_names is not None and label:
                label = key_names.get(label, f"deleted key #{label}")  # counted by id, known by name
            out.append({
                "budget": budget, "value": spender.value, "label": label, "values": values,
                "spent_usd": spent_usd.quantize(Decimal("0.000001")),
                "reserved_usd": reserved_usd.quantize(Decimal("0.000001")),
                # Of the reserved room, what proxy workers lease and have not spent (proxy/leases.py).
                "leased_usd": nanos_to_usd(spender.leased).quantize(Decimal("0.000001")),
                "remaining_usd": max(budget.limit_usd - spent_usd - reserved_usd, Decimal(0)).quantize(
                    Decimal("0.000001")),
                "percent": min(int(100 * spent_usd / limit), 999),
                "projected_usd": projected.quantize(Decimal("0.000001")),
                "projected_percent": min(int(100 * projected / limit), 100), "period_end": end,
            })
    return out


def recent_calls(account: Account, filters: dict[str, str], period: Range | None = None,
                 limit: int = 20) -> QuerySet[UsageRecord]:
    """The latest calls matching `filters`, inside `period` when given."""
    calls = UsageRecord.objects.filter(account=account)
    if period is not None:
        calls = calls.filter(created_at__gte=period.since, created_at__lt=period.until)
    for name, value in filters.items():
        if name == "key":
            calls = calls.filter(key_id=key_id(value))
        elif name in FILTERABLE:
            calls = calls.filter(**{name: value})
    return calls.select_related("key").order_by("-created_at")[:limit]


def live_token(account: Account) -> str:
    """Moves whenever new usage of the account is stored: the dashboard's 'anything new?' check."""
    token = sync_redis().get(ingested_key(account.pk)) or b"0"
    return token.decode() if isinstance(token, bytes) else token

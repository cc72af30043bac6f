"""What the dashboards show, read from the hourly rollups (never by scanning raw records, so a page
stays fast at tens of millions of records) and, for budgets, from the live Redis counters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum

from billing.models import Account, Budget, UsageRecord, UsageRollup, UsageTagRollup
from billing.periods import period_bounds
from billing.pricing import catalogue_price_table
from proxy.quota import NANOS_PER_USD, account_prefix, budget_counter_key
from tokonomics.redis_client import sync_redis

DIMENSIONS = ("feature", "tenant", "model", "provider", "key", "environment", "tag")
FILTERABLE = ("feature", "tenant", "model", "provider", "key", "environment")
SUM_FIELDS = ("requests", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
              "reasoning_tokens", "cost_usd", "unknown_cost_requests", "latency_ms_total")


@dataclass(frozen=True)
class Range:
    since: datetime
    until: datetime

    @property
    def hours(self) -> float:
        return (self.until - self.since).total_seconds() / 3600


def range_parse(params: dict[str, str], now: datetime | None = None) -> Range:
    """`?since=2026-11-01&until=2026-11-23` (dates or datetimes, UTC) or `?last=7d`; default 30 days."""
    now = now or datetime.now(UTC)
    last = params.get("last", "")
    if last.endswith(("d", "h")) and last[:-1].isdigit():
        amount = int(last[:-1])
        delta = timedelta(days=amount) if last.endswith("d") else timedelta(hours=amount)
        return Range(now - delta, now)
    since = _parse(params.get("since")) or now - timedelta(days=30)
    until = _parse(params.get("until"), end_of_day=True) or now
    if until <= since:
        until = since + timedelta(days=1)
    return Range(since, until)


def _parse(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end_of_day and len(value) == 10:
        parsed += timedelta(days=1)
    return parsed


def rollups(account: Account, period: Range, filters: dict[str, str]) -> QuerySet[UsageRollup]:
    hour_floor = period.since.replace(minute=0, second=0, microsecond=0)
    rows = UsageRollup.objects.filter(account=account, hour__gte=hour_floor, hour__lt=period.until)
    for name, value in filters.items():
        if name == "key":
            rows = rows.filter(key_id=int(value) if value.isdigit() else -1)
        elif name in FILTERABLE:
            rows = rows.filter(**{name: value})
    return rows


def totals(rows: QuerySet[UsageRollup]) -> dict[str, Any]:
    sums = rows.aggregate(**{f"sum_{f}": Sum(f) for f in SUM_FIELDS},
                          sum_denied=Sum("requests", filter=Q(status_code=429)),
                          sum_errors=Sum("requests", filter=Q(status_code__gte=500)))
    out = {k.removeprefix("sum_"): v or 0 for k, v in sums.items()}
    out["cost_per_request"] = (out["cost_usd"] / out["requests"]) if out["requests"] else Decimal(0)
    out["avg_latency_ms"] = int(out["latency_ms_total"] / out["requests"]) if out["requests"] else 0
    return out


def cached_savings(rows: QuerySet[UsageRollup], account: Account) -> Decimal:
    """What cached input tokens saved against paying the full input price for them."""
    from proxy.models import ProviderEndpoint

    pricing = dict(ProviderEndpoint.objects.filter(account=account).values_list("slug", "pricing_provider"))
    saved = Decimal(0)
    for row in rows.filter(cached_input_tokens__gt=0).values("provider", "model").annotate(
        cached=Sum("cached_input_tokens")
    ):
        table = catalogue_price_table(provider_id=pricing.get(row["provider"]) or None, base_url=None,
                                      model=row["model"])
        if table is not None:
            saved += row["cached"] * (table.input_per_mtok - table.cached_input_per_mtok) / 1_000_000
    return saved.quantize(Decimal("0.000001"))


def breakdown(account: Account, dimension: str, period: Range, filters: dict[str, str], limit: int = 50) -> list[dict]:
    """Rows of (value, requests, tokens, cost, share) for one dimension, dearest first."""
    if dimension == "tag":
        hour_floor = period.since.replace(minute=0, second=0, microsecond=0)
        tag_rows = (UsageTagRollup.objects.filter(account=account, hour__gte=hour_floor, hour__lt=period.until)
                    .values("tag", "value").annotate(requests_=Sum("requests"), cost=Sum("cost_usd"))
                    .order_by("-cost")[:limit])
        rows = [{"value": f"{r['tag']}={r['value']}", "requests": r["requests_"], "cost_usd": r["cost"],
                 "tokens": None} for r in tag_rows]
    else:
        column = "key_id" if dimension == "key" else dimension
        grouped = (rollups(account, period, filters).values(column)
                   .annotate(requests_=Sum("requests"), cost=Sum("cost_usd"),
                             tokens=Sum(F("input_tokens") + F("output_tokens")))
                   .order_by("-cost", "-requests_")[:limit])
        names = dict(account.api_keys.values_list("id", "name")) if dimension == "key" else {}
        rows = []
        for r in grouped:
            raw = r[column]
            rows.append({"value": raw, "label": names.get(raw, "(deleted key)" if raw else "(no key)")
                         if dimension == "key" else (raw or "(none)"),
                         "requests": r["requests_"], "cost_usd": r["cost"], "tokens": r["tokens"]})
    total = sum((r["cost_usd"] or 0) for r in rows) or Decimal(1)
    for r in rows:
        r.setdefault("label", r["value"])
        r["share"] = int(100 * (r["cost_usd"] or 0) / total)
    return rows


def spend_series(rows: QuerySet[UsageRollup], period: Range) -> list[dict]:
    """Spend per hour (ranges up to 3 days) or per day, every bucket present, for the chart."""
    daily = period.hours > 72
    step = timedelta(days=1) if daily else timedelta(hours=1)
    per_hour = dict(rows.values("hour").annotate(cost=Sum("cost_usd")).values_list("hour", "cost"))
    buckets: dict[datetime, Decimal] = {}
    for hour, cost in per_hour.items():
        key = hour.replace(hour=0) if daily else hour
        buckets[key] = buckets.get(key, Decimal(0)) + (cost or 0)
    start = period.since.replace(minute=0, second=0, microsecond=0)
    if daily:
        start = start.replace(hour=0)
    series, cursor = [], start
    while cursor < period.until and len(series) < 400:
        series.append({"at": cursor, "cost_usd": buckets.get(cursor, Decimal(0))})
        cursor += step
    peak = max((b["cost_usd"] for b in series), default=Decimal(0)) or Decimal(1)
    for b in series:
        b["height"] = int(100 * b["cost_usd"] / peak)
    return series


def budget_status(account: Account, now: datetime | None = None) -> list[dict]:
    """Spend this period against every budget (live Redis counters), with the end-of-period projection.
    A '*' budget shows its five biggest spenders."""
    now = now or datetime.now(UTC)
    client = sync_redis()
    out = []
    for budget in Budget.objects.filter(account=account):
        start, end = period_bounds(budget.period, account.timezone, now)
        base = budget_counter_key(account.pk, budget.pk, start)
        keys = [base]
        if budget.match == "*":  # one counter per tenant / feature / key seen this period
            keys = [k.decode() for k in client.scan_iter(match=f"{base}:*", count=500)]
        spent = [(k[len(base) + 1:] if k != base else "", int(client.hget(k, "s") or 0),
                  int(client.hget(k, "r") or 0)) for k in keys]
        spent.sort(key=lambda item: -item[1])
        elapsed = now.timestamp() - start.timestamp()  # timestamps: right across DST changes too
        fraction = 1.0 if end is None else min(1.0, max(elapsed / (end.timestamp() - start.timestamp()), 1e-6))
        for value, settled, reserved in spent[:5] or [("", 0, 0)]:
            spent_usd = Decimal(settled) / NANOS_PER_USD
            projected = spent_usd / Decimal(fraction) if end is not None else spent_usd
            limit = budget.limit_usd or Decimal("0.000001")
            out.append({
                "budget": budget, "value": value, "spent_usd": spent_usd.quantize(Decimal("0.000001")),
                "reserved_usd": (Decimal(reserved) / NANOS_PER_USD).quantize(Decimal("0.000001")),
                "percent": min(int(100 * spent_usd / limit), 999),
                "projected_usd": projected.quantize(Decimal("0.000001")),
                "projected_percent": min(int(100 * projected / limit), 100), "period_end": end,
            })
    return out


def recent_calls(account: Account, filters: dict[str, str], limit: int = 20) -> QuerySet[UsageRecord]:
    calls = UsageRecord.objects.filter(account=account)
    for name, value in filters.items():
        if name == "key":
            calls = calls.filter(key_id=int(value) if value.isdigit() else -1)
        elif name in FILTERABLE:
            calls = calls.filter(**{name: value})
    return calls.select_related("key").order_by("-created_at")[:limit]


def live_token(account: Account) -> str:
    """Moves whenever new usage of the account is stored: the dashboard's 'anything new?' check."""
    return (sync_redis().get(f"{account_prefix(account.pk)}:ingested") or b"0").decode()


def top_tenants(account: Account, period: Range, limit: int = 5) -> list[dict]:
    return list(rollups(account, period, {}).exclude(tenant="").values("tenant")
                .annotate(cost=Sum("cost_usd"), requests_=Count("id")).order_by("-cost")[:limit])

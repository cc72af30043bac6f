"""What the keys page shows of each key: when it was last used, its spend this month, and its budgets'
spend this period — a fixed number of queries however many keys (one per kind of fact, never per key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Max, Sum

from billing.models import Account, Budget
from billing.usage.rollups import rollup_for, rollup_rows
from proxy.budgets import BudgetLayout, BudgetPeriod, Named, nanos_to_usd
from proxy.models import ApiKey
from proxy.periods import period_bounds
from tokonomics.redis_client import sync_redis


@dataclass
class KeyBudgetSpend:
    budget: Budget
    spent_usd: Decimal
    percent: int


@dataclass
class KeyRow:
    key: ApiKey
    last_used_hour: datetime | None  # the hour of its latest call: rollups keep hours, never single calls
    month_usd: Decimal
    budgets: list[KeyBudgetSpend] = field(default_factory=list)


def key_row_list(account: Account, now: datetime | None = None) -> list[KeyRow]:
    """Every key of the account, active ones first, with what the keys table shows of it."""
    now = now or datetime.now(UTC)
    keys = list(ApiKey.objects.filter(account=account).order_by("revoked_at", "name"))
    ids = [k.pk for k in keys]
    hourly = rollup_for(["key_id"]).hourly._default_manager
    last_used = dict(hourly.filter(account_id=account.pk, key_id__in=ids).values("key_id")
                     .annotate(last=Max("hour")).order_by().values_list("key_id", "last"))
    month_start, _ = period_bounds("month", account.timezone, now)
    month = {row["key_id"]: row["cost"] or Decimal(0) for row in
             rollup_rows(account_id=account.pk, dimensions=["key_id"], first=month_start, end=None)
             .filter(key_id__in=ids).sums("key_id", cost=Sum("cost_usd"))}
    rows = [KeyRow(key=k, last_used_hour=last_used.get(k.pk), month_usd=month.get(k.pk, Decimal(0))) for k in keys]
    _add_budget_spend(account, rows, now)
    return rows


def _add_budget_spend(account: Account, rows: list[KeyRow], now: datetime) -> None:
    """Each key's budgets with their spend this period, read from the live Redis counters in one round trip."""
    budgets = list(Budget.objects.filter(account=account, scope=Budget.Scope.KEY).order_by("period", "match"))
    if not budgets:
        return
    layout = BudgetLayout(budgets)
    wanted: list[tuple[KeyRow, Budget, str]] = []
    for row in rows:
        for budget in budgets:
            value = layout.counter_value(budget, Named(row.key.name, str(row.key.pk)))
            if value is not None:
                start, _ = period_bounds(budget.period, account.timezone, now)
                wanted.append((row, budget, BudgetPeriod.of(account.pk, budget.pk, start).counter_key(value)))
    pipe = sync_redis().pipeline(transaction=False)
    for _, _, counter in wanted:
        pipe.hget(counter, "s")
    for (row, budget, _), settled in zip(wanted, pipe.execute(), strict=True):
        spent = nanos_to_usd(int(settled or 0)).quantize(Decimal("0.000001"))
        limit = budget.limit_usd or Decimal("0.000001")
        row.budgets.append(KeyBudgetSpend(budget=budget, spent_usd=spent, percent=min(int(100 * spent / limit), 999)))

"""Budget counters rebuilt from usage records: after Redis lost its data, or on an account's
first call, and from a Celery task on demand."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import Sum

from billing.models import Budget, UsageRecord
from billing.periods import period_bounds
from proxy.quota import NANOS_PER_USD, budget_counter_key, seeded_marker_key
from tokonomics.redis_client import sync_redis


def budget_spend_by_counter(*, account_id: int, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """{counter key: (settled nano-dollars, expiry unix s or 0)} for the current period of every budget."""
    now = now or datetime.now(UTC)
    budgets = list(Budget.objects.filter(account_id=account_id).select_related("account"))
    counters: dict[str, tuple[int, int]] = {}
    exact = {(b.scope, b.period, b.match) for b in budgets if b.match not in ("", "*")}
    for budget in budgets:
        start, end = period_bounds(budget.period, budget.account.timezone, now)
        expire_at = 0 if end is None else int(end.timestamp()) + 86400
        records = UsageRecord.objects.filter(account_id=account_id, created_at__gte=start, cost_usd__isnull=False)
        if end is not None:
            records = records.filter(created_at__lt=end)
        if budget.scope == "account":
            groups = {"": records}
        elif budget.match != "*":
            field = "key__name" if budget.scope == "key" else budget.scope
            groups = {"": records.filter(**{field: budget.match})}
        else:
            groups = _each_value(records, budget, exact)
        for value, subset in groups.items():
            total = subset.aggregate(total=Sum("cost_usd"))["total"]
            nanos = int(total * NANOS_PER_USD) if total is not None else 0
            counters[budget_counter_key(account_id, budget.id, start, value)] = (nanos, expire_at)
    return counters


def _each_value(records, budget: Budget, exact: set) -> dict:  # type: ignore[no-untyped-def]
    if budget.scope == "key":
        named = {m for (s, p, m) in exact if s == "key" and p == budget.period}
        pairs = records.exclude(key_id=None).values_list("key_id", "key__name").distinct()
        return {str(i): records.filter(key_id=i) for i, name in pairs if name not in named}
    values = records.exclude(**{budget.scope: ""}).values_list(budget.scope, flat=True).distinct()
    return {
        v: records.filter(**{budget.scope: v})
        for v in values
        if (budget.scope, budget.period, v) not in exact
    }


def budget_counters_rebuild(*, account_id: int, now: datetime | None = None) -> dict[str, int]:
    """Raise every settled counter of the account to at least what its records add up to, then mark
    the account seeded. Never lowers a counter: a live one also holds events not yet ingested."""
    client = sync_redis()
    counters = budget_spend_by_counter(account_id=account_id, now=now)
    result = {}
    for key, (nanos, expire_at) in counters.items():
        current = int(client.hget(key, "s") or 0)
        if nanos > current:
            client.hset(key, "s", nanos)
        if expire_at:
            client.expireat(key, expire_at)
        result[key] = max(nanos, current)
    client.set(seeded_marker_key(account_id), 1)
    return result

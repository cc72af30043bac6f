"""Budget counters rebuilt from usage records: after Redis lost its data, when an account's budget
layout changed, on an account's first call, and from a Celery task on demand.

Retention deletes raw records but keeps the rollups, so spend is read from hour and day rollups for the
whole (UTC) hours of a period, and from raw records only for the partial hours at its edges (a period
starting at 00:00 in a +05:30 zone starts at half past an hour).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet, Sum

from billing.models import Account, Budget, UsageRecord
from billing.usage.rollups import hour_start, rollup_rows
from proxy.models import ApiKey
from proxy.periods import period_bounds
from proxy.quota import (
    COUNTER_GRACE_SECONDS,
    NANOS_PER_USD,
    budget_counter_key,
    budget_layout_fingerprint,
    counters_seed,
)
from tokonomics.redis_client import sync_redis

# Calls refused before the proxy reserved anything (bad body, disallowed model, too large) never
# counted toward the plan's requests. Upstream answers with these statuses did, but cannot be told
# apart in the records: leaving them out errs on the side of letting calls through.
REFUSED_BEFORE_ADMISSION = (400, 401, 403, 413)


def _expiry(end: datetime | None) -> int:
    return 0 if end is None else int(end.timestamp()) + COUNTER_GRACE_SECONDS


def _hour_ceil(at: datetime) -> datetime:
    floor = hour_start(at.astimezone(UTC))
    return floor if floor == at else floor + timedelta(hours=1)


def budget_spend_by_counter(*, account_id: int, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """{counter key: (settled nano-dollars, expiry unix s or 0)} for the current period of every budget."""
    now = now or datetime.now(UTC)
    budgets = list(Budget.objects.filter(account_id=account_id).select_related("account__plan"))
    counters: dict[str, tuple[int, int]] = {}
    exact = {(b.scope, b.period, b.match) for b in budgets if b.match not in ("", "*")}
    for budget in budgets:
        start, end = period_bounds(budget.period, budget.account.timezone, now)
        retained_from = now - timedelta(days=budget.account.effective_retention_days)
        spend: Counter[str] = Counter()
        # Whole hours from the rollups; the partial hours at either edge from raw records. A first partial
        # hour whose records retention may have deleted is read from its rollup hour whole instead: it may
        # then count up to an hour before the period too, never less than was spent.
        first = _hour_ceil(start)
        if first != start and start < retained_from:
            first = hour_start(start.astimezone(UTC))
        elif first != start:
            spend.update(_spend_by_value(_records(account_id, start, first), budget, exact))
        last = hour_start(end.astimezone(UTC)) if end is not None else None
        if last is not None and last != end:
            spend.update(_spend_by_value(_records(account_id, last, end), budget, exact))
        spend.update(_rollup_spend_by_value(account_id, budget, exact, first, last))
        for value, nanos in spend.items():
            counters[budget_counter_key(account_id, budget.id, start, value)] = (nanos, _expiry(end))
    return counters


def _records(account_id: int, start: datetime, end: datetime | None) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(account_id=account_id, created_at__gte=start, cost_usd__isnull=False)
    return records.filter(created_at__lt=end) if end is not None else records


def _key_ids(account_id: int, names: Iterable[str]) -> list[int]:
    return list(ApiKey.objects.filter(account_id=account_id, name__in=list(names)).values_list("pk", flat=True))


def _rollup_spend_by_value(
    account_id: int, budget: Budget, exact: set[tuple[str, str, str]], first: datetime, end: datetime | None
) -> dict[str, int]:
    """{counter value: nano-dollars} of one budget over the whole hours [first, end), from rollups (the same
    values as _spend_by_value: a key by its id, a value some budget names left to that budget)."""
    field = {"account": "", "key": "key_id"}.get(budget.scope, budget.scope)
    rows = rollup_rows(account_id=account_id, dimensions=(field,) if field else (), first=first, end=end)
    if budget.scope == "account" or budget.match != "*":
        if budget.scope == "key":
            rows = rows.filter(key_id__in=_key_ids(account_id, [budget.match]))
        elif budget.scope != "account":
            rows = rows.filter(**{field: budget.match})
        return {"": _nanos(rows.sums(total=Sum("cost_usd"))[0]["total"])}
    named = {m for (s, p, m) in exact if s == budget.scope and p == budget.period}
    if budget.scope == "key":
        rows = rows.filter(~Q(key_id=0), ~Q(key_id__in=_key_ids(account_id, named)))
    else:
        rows = rows.filter(~Q(**{field: ""}), ~Q(**{f"{field}__in": named}))
    return {str(row[field]): _nanos(row["total"]) for row in rows.sums(field, total=Sum("cost_usd"))}


def _spend_by_value(records: QuerySet[UsageRecord], budget: Budget, exact: set[tuple[str, str, str]]) -> dict[str, int]:
    """{counter value: settled nano-dollars} of one budget, in one query."""
    if budget.scope == "account":
        return {"": _nanos(records.aggregate(total=Sum("cost_usd"))["total"])}
    if budget.match != "*":
        field = "key__name" if budget.scope == "key" else budget.scope
        return {"": _nanos(records.filter(**{field: budget.match}).aggregate(total=Sum("cost_usd"))["total"])}
    # A value some budget of the same scope and period names is counted there, not under '*'.
    named = {m for (s, p, m) in exact if s == budget.scope and p == budget.period}
    if budget.scope == "key":
        rows = records.exclude(key_id=None).exclude(key__name__in=named).values_list("key_id")
    else:
        rows = records.exclude(**{budget.scope: ""}).exclude(**{f"{budget.scope}__in": named})
        rows = rows.values_list(budget.scope)
    return {str(value): _nanos(total) for value, total in rows.annotate(total=Sum("cost_usd")).order_by()}


def _nanos(total: object) -> int:
    return int(total * NANOS_PER_USD) if total is not None else 0  # type: ignore[operator]


def plan_requests_recorded(*, account: Account, now: datetime) -> tuple[datetime, int, int]:
    """(month start, calls admitted this month per the records, plan counter expiry).

    Hours whose records retention may have deleted (an account retaining less than a month) are counted
    from the rollups, which cannot tell a denial from an upstream 429: both are left out there, and so is a
    deleted first partial hour, erring on the side of letting calls through."""
    start, end = period_bounds("month", account.timezone, now)
    retained_from = max(start, _hour_ceil(now - timedelta(days=account.effective_retention_days)))
    admitted = UsageRecord.objects.filter(account=account, created_at__gte=retained_from, created_at__lt=end,
                                          denied_scope="")
    count = admitted.exclude(status_code__in=REFUSED_BEFORE_ADMISSION).count()
    if retained_from > start:
        rows = rollup_rows(account_id=account.pk, dimensions=("status_code",), first=_hour_ceil(start),
                           end=retained_from)
        rows = rows.filter(~Q(status_code__in=(*REFUSED_BEFORE_ADMISSION, 429)))
        count += rows.sums(requests=Sum("requests"))[0]["requests"] or 0
    return start, count, _expiry(end)


def budget_layout_of(budgets: Iterable[Budget], timezone_name: str) -> str:
    return budget_layout_fingerprint(timezone_name, ((b.id, b.scope, b.match, b.period) for b in budgets))


def budget_counters_rebuild(
    *, account_id: int, now: datetime | None = None, fingerprint: str = ""
) -> dict[str, int]:
    """Raise every counter of the account's current periods to at least what its records add up to, and
    mark its budget layout seeded (also `fingerprint`, the layout the asking proxy knows, which may be a
    poll behind). Never lowers a counter: a live one also holds events not yet ingested. Returns
    {counter key: settled nano-dollars afterwards}."""
    now = now or datetime.now(UTC)
    account = Account.objects.select_related("plan").filter(pk=account_id).first()
    if account is None:
        return {}
    counters = budget_spend_by_counter(account_id=account_id, now=now)
    layouts = {budget_layout_of(account.budgets.all(), account.timezone), fingerprint} - {""}
    plan = plan_requests_recorded(account=account, now=now) if account.plan.monthly_request_limit else None
    return counters_seed(sync_redis(), account_id=account_id, counters=counters, fingerprints=sorted(layouts),
                         plan=plan)


def budget_counters_rebuild_all(*, now: datetime | None = None) -> int:
    """Rebuild the counters of every account with budgets or a plan request limit; returns how many."""
    accounts = Account.objects.filter(Q(budgets__isnull=False) | Q(plan__monthly_request_limit__isnull=False))
    ids = list(accounts.distinct().values_list("pk", flat=True))
    for account_id in ids:
        budget_counters_rebuild(account_id=account_id, now=now)
    return len(ids)

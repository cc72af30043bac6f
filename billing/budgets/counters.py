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
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum

from billing.models import Account, Budget, UsageRecord
from billing.usage.rollups import hour_start, rollup_rows
from proxy.budgets import (
    COUNTER_GRACE_SECONDS,
    BudgetLayout,
    BudgetPeriod,
    Named,
    budget_layout_fingerprint,
    budget_value_token,
    per_value,
    usd_to_nanos,
)
from proxy.models import ApiKey
from proxy.periods import period_bounds
from proxy.quota import CounterSeed, counters_seed
from tokonomics.redis_client import sync_redis

# Calls refused before the proxy reserved anything (bad body, disallowed model, too large) never
# counted toward the plan's requests. Upstream answers with these statuses did, but cannot be told
# apart in the records: leaving them out errs on the side of letting calls through.
REFUSED_BEFORE_ADMISSION = (400, 401, 403, 413)
# The record column a scope's spend is grouped by; which group lands in which counter is
# proxy.budgets' rule.
GROUP_COLUMNS = {"account": "", "tenant": "tenant", "feature": "feature", "key": "key_id", "session": "session"}
# Columns no rollup keeps: their spend is summed from the raw records alone (retention bounds what a rebuild
# sees; a session budget caps a run, which is over long before its records are).
RAW_ONLY_COLUMNS = frozenset({"session"})


def _expiry(end: datetime | None) -> int:
    return 0 if end is None else int(end.timestamp()) + COUNTER_GRACE_SECONDS


def _hour_ceil(at: datetime) -> datetime:
    floor = hour_start(at.astimezone(UTC))
    return floor if floor == at else floor + timedelta(hours=1)


def budget_counter_seeds(*, account_id: int, now: datetime | None = None) -> list[CounterSeed]:
    """Every counter of the current period of every budget, with its settled spend per the records."""
    now = now or datetime.now(UTC)
    budgets = list(Budget.objects.filter(account_id=account_id).select_related("account__plan"))
    layout = BudgetLayout(budgets)
    key_names = dict(ApiKey.objects.filter(account_id=account_id).values_list("pk", "name"))
    spend: dict[tuple[str, datetime, datetime | None], dict[object, int]] = {}
    seeds = []
    for budget in budgets:
        start, end = period_bounds(budget.period, budget.account.timezone, now)
        column = GROUP_COLUMNS[budget.scope]
        if (column, start, end) not in spend:
            retained_from = now - timedelta(days=budget.account.effective_retention_days)
            spend[(column, start, end)] = _spend_by_group(account_id, column, start, end, retained_from)
        by_value: Counter[str] = Counter()
        for group, nanos in spend[(column, start, end)].items():
            value = layout.counter_value(budget, _named(column, group, key_names))
            if value is not None:
                by_value[value] += nanos
        period, indexed = BudgetPeriod.of(account_id, budget.id, start), per_value(budget)
        seeds += [CounterSeed(period.counter_key(value), nanos, _expiry(end), period.values_key if indexed else "",
                              budget_value_token(value) if indexed else "")
                  for value, nanos in by_value.items()]
    return seeds


def budget_spend_by_counter(*, account_id: int, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """{counter key: (settled nano-dollars, expiry unix s or 0)} for the current period of every budget."""
    return {seed.key: (seed.nanos, seed.expire_at) for seed in budget_counter_seeds(account_id=account_id, now=now)}


def _named(column: str, group: object, key_names: dict[int, str]) -> Named:
    """What a group of records names in its scope (a key by its name, its counter by its id)."""
    if column == "key_id":
        name = key_names.get(group, "") if isinstance(group, int) else ""  # no key, or a deleted one: none
        return Named(name, str(group))
    return Named(str(group or ""), str(group or ""))


def _spend_by_group(
    account_id: int, column: str, start: datetime, end: datetime | None, retained_from: datetime
) -> dict[object, int]:
    """{value of `column` ('' for none: the whole account): nano-dollars} over [start, end): whole hours
    from the rollups, the partial hours at either edge from raw records. A first partial hour whose records
    retention may have deleted is read from its rollup hour whole instead: it may then count up to an hour
    before the period too, never less than was spent."""
    totals: Counter[object] = Counter()
    if column in RAW_ONLY_COLUMNS:
        records = _records(account_id, max(start, retained_from), end).exclude(**{column: ""})
        return _record_sums(records, column)
    first = _hour_ceil(start)
    if first != start and start < retained_from:
        first = hour_start(start.astimezone(UTC))
    elif first != start:
        totals.update(_record_sums(_records(account_id, start, first), column))
    last = hour_start(end.astimezone(UTC)) if end is not None else None
    if last is not None and last != end:
        totals.update(_record_sums(_records(account_id, last, end), column))
    rows = rollup_rows(account_id=account_id, dimensions=(column,) if column else (), first=first, end=last)
    if column:
        totals.update({row[column]: _nanos(row["total"]) for row in rows.sums(column, total=Sum("cost_usd"))})
    else:
        totals[""] += _nanos(rows.sums(total=Sum("cost_usd"))[0]["total"])
    return dict(totals)


def _records(account_id: int, start: datetime, end: datetime | None) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(account_id=account_id, created_at__gte=start, cost_usd__isnull=False)
    return records.filter(created_at__lt=end) if end is not None else records


def _record_sums(records: QuerySet[UsageRecord], column: str) -> dict[object, int]:
    """{value of `column`: nano-dollars} of some records, in one query."""
    if not column:
        return {"": _nanos(records.aggregate(total=Sum("cost_usd"))["total"])}
    rows = records.values_list(column).annotate(total=Sum("cost_usd")).order_by()
    return {value: _nanos(total) for value, total in rows}


def _nanos(total: Decimal | None) -> int:
    return usd_to_nanos(total) if total is not None else 0  # a sum over no rows


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
    return budget_layout_fingerprint(timezone_name, budgets)


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
    counters = budget_counter_seeds(account_id=account_id, now=now)
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

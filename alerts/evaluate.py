"""When alerts fire: budget thresholds (after each ingest), forecasts, burn rate and plan limits
(on a schedule). Each fires once per (target, threshold, period, limit): the event's unique
dedupe key is the claim; a Redis marker only saves asking the database again."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Sum

from alerts.events import alert_event_create, alert_subscribed
from alerts.models import AlertEvent, AlertRule
from alerts.payloads import alert_summary, budget_data
from billing.models import Account, Budget, UsageRecord
from proxy.budgets import (
    BudgetLayout,
    BudgetPeriod,
    Named,
    account_prefix,
    alert_claim,
    budget_value_token,
    nanos_to_usd,
    per_value,
    usd_to_nanos,
)
from proxy.periods import period_bounds
from proxy.quota import ValueSpend, budget_values_list, plan_counter_key
from tokonomics.redis_client import sync_redis

log = logging.getLogger(__name__)

FORECAST_MIN_ELAPSED = 0.1  # a forecast from the first minutes of a period is noise
PLAN_NOTICE_THRESHOLDS = (80, 100)
# `plan.limit_approaching` (opt-in): once a month, when this share of the monthly requests is used.
PLAN_APPROACHING_PERCENT = 80
# The most counters of one '*' budget a forecast run looks at: those closest to their cap first.
MAX_FORECAST_VALUES = 1000


@dataclass(frozen=True, slots=True)
class Touched:
    """What an ingested batch of usage touched in one account."""

    tenants: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()
    key_ids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class BudgetCounter:
    budget: Budget
    value: str  # '' for a budget with one counter; the tenant / feature / key id of a '*' budget
    key: str
    period_start: datetime
    period_end: datetime | None


def _usd(nanos: int) -> Decimal:
    return nanos_to_usd(nanos).quantize(Decimal("0.000001"))


def budget_counter_list(
    *, account: Account, budgets: Iterable[Budget], touched: Touched, now: datetime
) -> list[BudgetCounter]:
    """The counters a threshold check reads: every budget's one counter, and the counters of '*' budgets the
    values an ingested batch touched land in."""
    layout = BudgetLayout(budgets)
    keys = touched.key_ids if any(per_value(b) and b.scope == "key" for b in layout.budgets) else ()
    key_names = dict(account.api_keys.filter(pk__in=keys).values_list("pk", "name")) if keys else {}
    names = {
        "tenant": [Named(v, v) for v in touched.tenants],
        "feature": [Named(v, v) for v in touched.features],
        "session": [Named(v, v) for v in touched.sessions],
        "key": [Named(name, str(pk)) for pk, name in key_names.items()],
    }
    out = []
    for budget in layout.budgets:
        start, end = period_bounds(budget.period, account.timezone, now)
        period = BudgetPeriod.of(account.pk, budget.pk, start)
        values = layout.values_for(budget, names[budget.scope]) if per_value(budget) else [""]
        out += [BudgetCounter(budget, value, period.counter_key(value), start, end) for value in values]
    return out


def budget_counter_spent(*, counters: list[BudgetCounter]) -> list[int]:
    """The settled nano-dollars of each counter, in one round trip."""
    pipe = sync_redis().pipeline(transaction=False)
    for counter in counters:
        pipe.hget(counter.key, "s")
    return [int(v or 0) for v in pipe.execute()]


def _marker(account_id: int, dedupe_key: str) -> str:
    return f"{account_prefix(account_id)}:alerted:{dedupe_key}"


def _fire_once(account: Account, event_type: str, dedupe_key: str, data: dict, channel_ids: list[int] | None,
               expires_at: datetime | None) -> AlertEvent | None:
    client = sync_redis()
    marker = _marker(account.pk, dedupe_key)
    if client.exists(marker):
        return None
    event = alert_event_create(account_id=account.pk, event_type=event_type, dedupe_key=dedupe_key, data=data,
                               channel_ids=channel_ids)
    client.set(marker, 1, exat=int((expires_at or datetime.now(UTC) + timedelta(days=400)).timestamp()) + 86400)
    return event


def _budget_event_data(account: Account, counter: BudgetCounter, spent_nanos: int) -> dict:
    return {
        "account": account.slug,
        "budget": budget_data(counter.budget),
        "value": counter.value,
        "spent_usd": _usd(spent_nanos),
        "period_start": counter.period_start,
        "period_end": counter.period_end,
    }


def budget_thresholds_check(*, account_id: int, touched: Touched, now: datetime | None = None) -> list[AlertEvent]:
    """Fire threshold_crossed / exhausted for every threshold the live counters have reached."""
    now = now or datetime.now(UTC)
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return []
    budgets = Budget.objects.filter(account=account).exclude(alert_at=[]).prefetch_related("channels")
    counters = budget_counter_list(account=account, budgets=budgets, touched=touched, now=now)
    fired = []
    for counter, spent in zip(counters, budget_counter_spent(counters=counters), strict=True):
        budget = counter.budget
        limit_nanos = usd_to_nanos(budget.limit_usd)
        if limit_nanos <= 0:
            continue
        for threshold in sorted(budget.alert_at):
            if spent * 100 < limit_nanos * threshold:
                break
            event_type = AlertEvent.Type.EXHAUSTED if threshold >= 100 else AlertEvent.Type.THRESHOLD_CROSSED
            dedupe = alert_claim(counter.key, f"t{threshold}", f"l{limit_nanos}")
            data = {**_budget_event_data(account, counter, spent), "threshold_percent": threshold}
            channel_ids = [c.pk for c in budget.channels.all()] or None
            event = _fire_once(account, event_type, dedupe, data, channel_ids, counter.period_end)
            if event is not None:
                fired.append(event)
    return fired


def budget_resolved_check(*, budget_id: int, now: datetime | None = None) -> list[AlertEvent]:
    """After a budget's limit changed: every counter that had been exhausted this period and is now
    under the limit gets a `budget.resolved` event (thresholds re-arm by themselves: the limit is
    part of their dedupe key)."""
    now = now or datetime.now(UTC)
    budget = Budget.objects.filter(pk=budget_id).select_related("account").first()
    if budget is None:
        return []
    account = budget.account
    start, end = period_bounds(budget.period, account.timezone, now)
    period = BudgetPeriod.of(account.pk, budget.pk, start)
    exhausted = AlertEvent.objects.filter(account=account, type=AlertEvent.Type.EXHAUSTED,
                                          dedupe_key__startswith=period.claim_base + ":")
    limit_nanos = usd_to_nanos(budget.limit_usd)
    fired = []
    for event in exhausted:
        key = period.claimed_key(event.dedupe_key, parts=2)  # a threshold's claim: t{threshold}, l{limit}
        counter = BudgetCounter(budget, period.value_of(key), key, start, end)
        [spent] = budget_counter_spent(counters=[counter])
        if spent < limit_nanos:
            data = {**_budget_event_data(account, counter, spent), "threshold_percent": 100}
            channel_ids = [c.pk for c in budget.channels.all()] or None
            resolved = _fire_once(account, AlertEvent.Type.RESOLVED, alert_claim(key, "resolved", f"l{limit_nanos}"),
                                  data, channel_ids, end)
            if resolved is not None:
                fired.append(resolved)
    return fired


def budget_forecasts_check(*, now: datetime | None = None) -> list[AlertEvent]:
    """'At this rate the cap is reached in N hours', from the same period arithmetic as enforcement."""
    now = now or datetime.now(UTC)
    fired = []
    client = sync_redis()
    budgets = Budget.objects.exclude(period__in=["total"]).exclude(alert_at=[])  # no thresholds: no alerts wanted
    for budget in budgets.select_related("account").prefetch_related("channels"):
        account = budget.account
        start, end = period_bounds(budget.period, account.timezone, now)
        assert end is not None
        # Timestamps, not datetime subtraction: two datetimes in one zone subtract wall-clock time,
        # an hour off across a DST change.
        elapsed = now.timestamp() - start.timestamp()
        fraction = elapsed / (end.timestamp() - start.timestamp())
        limit_nanos = usd_to_nanos(budget.limit_usd)
        if fraction < FORECAST_MIN_ELAPSED or limit_nanos <= 0:
            continue
        period = BudgetPeriod.of(account.pk, budget.pk, start)
        if per_value(budget):
            # Only a counter past limit × fraction (and not yet at the limit) can project past its cap.
            spenders = budget_values_list(client, period=period, limit=MAX_FORECAST_VALUES,
                                          min_nanos=int(limit_nanos * fraction), max_nanos=limit_nanos)
        else:
            spenders = [ValueSpend("", period.base, int(client.hget(period.base, "s") or 0), 0)]
        for spender in spenders:
            spent = spender.settled
            if spent <= 0 or spent >= limit_nanos or spent / fraction <= limit_nanos:
                continue
            rate_per_hour = spent / (elapsed / 3600)
            hours = Decimal((limit_nanos - spent) / rate_per_hour).quantize(Decimal("0.1"))
            counter = BudgetCounter(budget, spender.value, spender.key, start, end)
            data = {**_budget_event_data(account, counter, spent), "hours_to_limit": hours,
                    "projected_spend_usd": _usd(int(spent / fraction))}
            channel_ids = [c.pk for c in budget.channels.all()] or None
            dedupe = alert_claim(counter.key, "forecast", f"l{limit_nanos}")
            event = _fire_once(account, AlertEvent.Type.FORECAST, dedupe, data, channel_ids, end)
            if event is not None:
                fired.append(event)
    return fired


BASELINE_HOURS = 24
BURN_PAGE_INTERVAL = timedelta(hours=1)  # at most one page an hour per runaway target


def burn_rate_check(*, now: datetime | None = None) -> list[AlertEvent]:
    """Runaway spend: a key, feature or tenant spending in the last window much faster than its own
    trailing average — the agent stuck in a loop at 3 a.m. Spend under the rule's floor never pages. A session
    (one agent run) is new, so has no trailing spend: a session rule pages for any run spending more than its
    floor within one window — the looping run."""
    now = now or datetime.now(UTC)
    client = sync_redis()
    fired = []
    for rule in AlertRule.objects.filter(kind=AlertRule.Kind.BURN_RATE, enabled=True).select_related("account"):
        window = timedelta(minutes=rule.window_minutes)
        field = {"key": "key_id", "account": "account_id"}.get(rule.scope, rule.scope)
        records = UsageRecord.objects.filter(account=rule.account, cost_usd__isnull=False)
        if rule.match not in ("", "*") and rule.scope != "account":
            records = records.filter(**({"key__name": rule.match} if rule.scope == "key" else {field: rule.match}))
        recent = dict(records.filter(created_at__gte=now - window, created_at__lt=now)
                      .values_list(field).annotate(total=Sum("cost_usd")).values_list(field, "total"))
        baseline_start = now - window - timedelta(hours=BASELINE_HOURS)
        trailing = dict(records.filter(created_at__gte=baseline_start, created_at__lt=now - window)
                        .values_list(field).annotate(total=Sum("cost_usd")).values_list(field, "total"))
        windows_in_baseline = Decimal(BASELINE_HOURS * 60) / rule.window_minutes
        for value, spend in recent.items():
            if value in ("", None) or spend < rule.floor_usd:
                continue
            usual = (trailing.get(value) or Decimal(0)) / windows_in_baseline
            if usual > 0 and spend < rule.multiplier * usual:
                continue
            # The value is encoded: a Redis key and a 300-character column hold the dedupe key.
            target = f"burn:{rule.pk}:{budget_value_token(str(value))}"
            last_paged = _marker(rule.account_id, f"{target}:last")
            last = client.get(last_paged)
            # A rolling hour since the last page, not the clock hour: a target caught at 08:59 is not paged
            # again at 09:00.
            if last is not None and now.timestamp() - float(last) < BURN_PAGE_INTERVAL.total_seconds():
                continue
            ratio = (spend / usual).quantize(Decimal("0.1")) if usual > 0 else "∞"
            data = {"account": rule.account.slug, "rule_id": rule.pk, "scope": rule.scope, "value": str(value),
                    "window_minutes": rule.window_minutes, "window_spend_usd": spend,
                    "usual_window_spend_usd": usual.quantize(Decimal("0.000001")), "ratio": ratio,
                    "multiplier": rule.multiplier, "floor_usd": rule.floor_usd}
            channel_ids = [c.pk for c in rule.channels.all()] or None
            # The clock hour in the dedupe key makes two workers evaluating at once fire one event.
            dedupe = f"{target}:{int(now.timestamp()) // 3600}"
            event = _fire_once(rule.account, AlertEvent.Type.BURN_RATE, dedupe, data, channel_ids,
                               now + timedelta(hours=2))
            if event is not None:
                client.set(last_paged, repr(now.timestamp()), ex=int(2 * BURN_PAGE_INTERVAL.total_seconds()))
                fired.append(event)
    return fired


def plan_request_limits_check(*, now: datetime | None = None) -> list[AlertEvent]:
    """Notices to owners (and the account's channels) at 80 % and 100 % of the monthly request limit."""
    now = now or datetime.now(UTC)
    client = sync_redis()
    fired = []
    for account in Account.objects.filter(plan__monthly_request_limit__isnull=False).select_related("plan"):
        start, end = period_bounds("month", account.timezone, now)
        used = int(client.get(plan_counter_key(account.pk, start)) or 0)
        limit = account.plan.monthly_request_limit
        assert limit is not None  # the query skips plans without one
        if used * 100 >= limit * PLAN_APPROACHING_PERCENT and alert_subscribed(
                account_id=account.pk, event_type=AlertEvent.Type.PLAN_LIMIT_APPROACHING):
            data = {"account": account.slug, "threshold_percent": PLAN_APPROACHING_PERCENT, "requests": used,
                    "monthly_request_limit": limit, "plan": account.plan.slug, "period_start": start,
                    "period_end": end}
            event = _fire_once(account, AlertEvent.Type.PLAN_LIMIT_APPROACHING,
                               f"plan-approaching:{account.pk}:{int(start.timestamp())}", data, None, end)
            if event is not None:
                fired.append(event)
        for threshold in PLAN_NOTICE_THRESHOLDS:
            if used * 100 < limit * threshold:
                break
            data = {"account": account.slug, "threshold_percent": threshold, "requests": used,
                    "monthly_request_limit": limit, "period_start": start, "period_end": end}
            event = _fire_once(account, AlertEvent.Type.PLAN_REQUEST_LIMIT,
                               f"plan:{account.pk}:{int(start.timestamp())}:{threshold}", data, None, end)
            if event is not None:
                _email_owners(account, event)
                fired.append(event)
    return fired


def _email_owners(account: Account, event: AlertEvent) -> None:
    owners = list(account.seats.filter(role="owner").values_list("user__email", flat=True))
    if owners:
        summary = alert_summary(event.payload)
        send_mail(f"[Tokonomics] {summary}", f"{summary}\n\nUpgrade the plan or reduce traffic to keep calls flowing.",
                  settings.DEFAULT_FROM_EMAIL, owners, fail_silently=True)

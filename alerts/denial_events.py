"""`rate_limit.exceeded` and `budget.denied` webhook events (CONTRACT §6), from the denials the ledger has just
stored: the proxy records every 429 it answers (with its `denied_scope`) on the usage stream and touches no SQL;
the worker that ingests them fires the events. A Redis marker set with NX is the claim that keeps the window
(one per key per minute, one per budget and value per period) across workers; the unique dedupe key stands
behind it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.events import alert_event_create, alert_subscribed
from alerts.models import AlertEvent
from alerts.payloads import budget_data
from billing.models import Account, Budget
from proxy.budgets import WILDCARD, account_prefix, budget_value_token
from proxy.models import ApiKey
from proxy.periods import period_bounds
from tokonomics.redis_client import sync_redis

log = logging.getLogger(__name__)

RATE_LIMIT_WINDOW_SECONDS = 60


def _claim(account_id: int, name: str, *, seconds: int) -> bool:
    """True for the one caller that sets the marker first; it lapses after `seconds`."""
    return bool(sync_redis().set(f"{account_prefix(account_id)}:alerted:{name}", 1, nx=True, ex=max(1, seconds)))


def _key_of(account_id: int, key_id: int | None, cache: dict[int, ApiKey | None]) -> ApiKey | None:
    if key_id is None:
        return None
    if key_id not in cache:
        cache[key_id] = ApiKey.objects.filter(pk=key_id, account_id=account_id).first()
    return cache[key_id]


def denial_events_fire(*, events: list[dict]) -> list[AlertEvent]:
    """Fire what the denials (and budget downgrades) among just-ingested usage events call for."""
    denials = [e for e in events if e.get("denied_scope")]
    fired: list[AlertEvent] = downgrade_events_fire(events=events)
    by_account: dict[int, list[dict]] = {}
    for event in denials:
        by_account.setdefault(event["account_id"], []).append(event)
    for account_id, batch in by_account.items():
        account = Account.objects.filter(pk=account_id).first()
        if account is None:
            continue
        keys: dict[int, ApiKey | None] = {}
        rate = [e for e in batch if str(e["denied_scope"]).startswith("rate_")]
        if rate and alert_subscribed(account_id=account_id, event_type=AlertEvent.Type.RATE_LIMIT_EXCEEDED):
            fired += _rate_limits_fire(account, rate, keys)
        budget = [e for e in batch if str(e["denied_scope"]).endswith("_budget")]
        if budget and alert_subscribed(account_id=account_id, event_type=AlertEvent.Type.BUDGET_DENIED):
            fired += _budget_denials_fire(account, budget, keys)
    return fired


def _rate_limits_fire(account: Account, batch: list[dict], keys: dict[int, ApiKey | None]) -> list[AlertEvent]:
    fired = []
    for event in sorted(batch, key=lambda e: e["created_at"]):
        key = _key_of(account.pk, event.get("key_id"), keys)
        if key is None or not _claim(account.pk, f"rate:{key.pk}", seconds=RATE_LIMIT_WINDOW_SECONDS):
            continue
        at = datetime.fromtimestamp(event["created_at"], UTC)
        data = {"account": account.slug, "key": {"id": key.pk, "name": key.name, "prefix": key.prefix},
                "limit": event["denied_scope"], "requests_per_minute": key.requests_per_minute,
                "tokens_per_minute": key.tokens_per_minute, "max_concurrent": key.max_concurrent,
                "denied_at": at, "window_seconds": RATE_LIMIT_WINDOW_SECONDS}
        created = alert_event_create(account_id=account.pk, event_type=AlertEvent.Type.RATE_LIMIT_EXCEEDED,
                                     dedupe_key=f"rate_limit:{key.pk}:{int(at.timestamp())}", data=data)
        if created is not None:
            fired.append(created)
    return fired


def _denied_budget(account: Account, scope: str, value: str) -> Budget | None:
    """The hard budget of `scope` that caps `value`: the one naming it, else the '*' one. (Both may deny;
    the one naming the value is the narrower and the one reported.)"""
    budgets = {b.match: b for b in account.budgets.filter(scope=scope, hard=True)}
    if scope == Budget.Scope.ACCOUNT:
        return next(iter(budgets.values()), None)
    return budgets.get(value) or budgets.get(WILDCARD)


def _budget_denials_fire(account: Account, batch: list[dict], keys: dict[int, ApiKey | None]) -> list[AlertEvent]:
    fired = []
    for event in sorted(batch, key=lambda e: e["created_at"]):
        scope = str(event["denied_scope"]).removesuffix("_budget")
        if scope == Budget.Scope.KEY:
            key = _key_of(account.pk, event.get("key_id"), keys)
            value = key.name if key else ""
        else:
            value = str(event.get(scope) or "") if scope in (Budget.Scope.TENANT, Budget.Scope.FEATURE) else ""
        budget = _denied_budget(account, scope, value)
        if budget is None:
            continue
        at = datetime.fromtimestamp(event["created_at"], UTC)
        start, end = period_bounds(budget.period, account.timezone, at)
        # The value is encoded: a Redis key and a 300-character column hold the claim.
        name = f"denied:{budget.pk}:{int(start.timestamp())}:{budget_value_token(value)}"
        lasts = (end or at + timedelta(days=400)) - datetime.now(UTC) + timedelta(days=1)
        if not _claim(account.pk, name, seconds=int(lasts.total_seconds())):
            continue
        data: dict[str, Any] = {"account": account.slug, "budget": budget_data(budget), "value": value,
                                "reserved_usd": event.get("reserved_usd"), "denied_at": at,
                                "period_start": start, "period_end": end}
        created = alert_event_create(account_id=account.pk, event_type=AlertEvent.Type.BUDGET_DENIED,
                                     dedupe_key=name, data=data)
        if created is not None:
            fired.append(created)
    return fired


def _value_of(account: Account, budget: Budget, event: dict, keys: dict[int, ApiKey | None]) -> str:
    """What a call names in the budget's scope (a key by its name)."""
    if budget.scope == Budget.Scope.KEY:
        key = _key_of(account.pk, event.get("key_id"), keys)
        return key.name if key else ""
    if budget.scope in (Budget.Scope.TENANT, Budget.Scope.FEATURE, Budget.Scope.SESSION):
        return str(event.get(budget.scope) or "")
    return ""


def downgrade_events_fire(*, events: list[dict]) -> list[AlertEvent]:
    """`budget.downgraded`: the first call a budget downgraded, per budget (and value) per period. The proxy's
    event names the budget (`downgrade_budget_id`: not a record field)."""
    fired: list[AlertEvent] = []
    downgraded = [e for e in events if e.get("downgrade_budget_id")]
    by_account: dict[int, list[dict]] = {}
    for event in downgraded:
        by_account.setdefault(event["account_id"], []).append(event)
    for account_id, batch in by_account.items():
        if not alert_subscribed(account_id=account_id, event_type=AlertEvent.Type.BUDGET_DOWNGRADED):
            continue
        account = Account.objects.filter(pk=account_id).first()
        if account is None:
            continue
        budgets = {b.pk: b for b in account.budgets.filter(pk__in={e["downgrade_budget_id"] for e in batch})}
        keys: dict[int, ApiKey | None] = {}
        for event in sorted(batch, key=lambda e: e["created_at"]):
            budget = budgets.get(event["downgrade_budget_id"])
            if budget is None:
                continue
            value = _value_of(account, budget, event, keys)
            at = datetime.fromtimestamp(event["created_at"], UTC)
            start, end = period_bounds(budget.period, account.timezone, at)
            name = f"downgraded:{budget.pk}:{int(start.timestamp())}:{budget_value_token(value)}"
            lasts = (end or at + timedelta(days=400)) - datetime.now(UTC) + timedelta(days=1)
            if not _claim(account.pk, name, seconds=int(lasts.total_seconds())):
                continue
            data: dict[str, Any] = {
                "account": account.slug, "budget": {**budget_data(budget), "downgrade_at": budget.downgrade_at},
                "value": value, "downgraded_from": event.get("downgraded_from", ""),
                "downgrade_to": budget.downgrade_to, "downgraded_at": at, "period_start": start, "period_end": end,
            }
            created = alert_event_create(account_id=account.pk, event_type=AlertEvent.Type.BUDGET_DOWNGRADED,
                                         dedupe_key=name, data=data)
            if created is not None:
                fired.append(created)
    return fired

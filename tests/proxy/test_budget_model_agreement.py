"""The four readers of the budget model agree (issue 14 §1): on random budget layouts and calls, the counters
enforcement reserves and settles in Redis, the counters rebuilt from the stored usage records, the counters
alerts evaluate and what the dashboard shows hold the same spend under the same names — and all of them
what CONTRACT §2 says, restated here on its own as the oracle."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alerts.evaluate import Touched, budget_counter_list, budget_counter_spent
from billing.budgets.counters import budget_counters_rebuild, budget_spend_by_counter
from billing.dashboard.selectors import budget_status
from billing.models import Account, Budget
from billing.usage.records import usage_record_batch
from proxy.budgets import BudgetEntry, BudgetPeriod, budget_value_of, budget_value_token, nanos_to_usd, usd_to_nanos
from proxy.directory import AccountEntry, KeyEntry
from proxy.periods import period_bounds
from proxy.quota import Denial, Quota, Reservation, budget_values_list
from proxy.redis_pipeline import PipelinedRedis
from proxy.usage_bounds import TEXT_LIMITS, text_clean
from tokonomics.redis_client import sync_redis

from ..conftest import make_key

# Values that collide with each other and with budget matches often: a tenant called '*', key and Lua
# separators, an encoded-looking one, and one too long to keep in a key (kept as its hash).
VALUES = ["globex", "vip", "*", "a|b:c", "%7C", "#1", "ümlaut", "x" * 200]
KEY_NAMES = ["main", "ci", "ops"]
PERIODS = ["hour", "day", "week", "month", "total"]
ZONES = ["UTC", "Asia/Kolkata"]
MICRO = 1000  # nano-dollars: costs are whole micro-dollars, the dashboard's precision


@dataclass(frozen=True)
class Call:
    key: int  # index into KEY_NAMES
    tenant: str
    feature: str
    session: str
    cost_micros: int
    estimate_micros: int
    minutes_ago: int  # before now: some calls fall in the previous hour, day or week


def _match(scope: str) -> st.SearchStrategy[str]:
    if scope == "account":
        return st.just("")
    return st.one_of(st.just("*"), st.sampled_from(KEY_NAMES if scope == "key" else VALUES))


# Limits in micro-dollars, about as much as a few calls spend: hard budgets deny some calls.
budget_rows = st.sampled_from(["account", "tenant", "feature", "key", "session"]).flatmap(lambda scope: st.tuples(
    st.just(scope), _match(scope), st.sampled_from(PERIODS), st.integers(0, 60), st.booleans()))
layouts = st.lists(budget_rows, max_size=8, unique_by=lambda b: (b[0], b[1], b[2]))
calls = st.lists(st.builds(
    Call,
    key=st.integers(0, len(KEY_NAMES) - 1),
    tenant=st.sampled_from(["", *VALUES]),
    feature=st.sampled_from(["", *VALUES]),
    session=st.sampled_from(["", "run-1", "run-2", *VALUES[2:4]]),
    cost_micros=st.integers(0, 9),
    estimate_micros=st.integers(0, 12),
    minutes_ago=st.sampled_from([0, 1, 30, 70, 60 * 30]),
), max_size=14)


def _oracle(budgets: list[Budget], keys: list, admitted: list[Call], now: datetime) -> dict[tuple[int, str], int]:
    """CONTRACT §2 in its own words: {(budget id, value as shown): nano-dollars} of the current periods."""
    spend: Tally[tuple[int, str]] = Tally()
    for call in admitted:
        at = now - timedelta(minutes=call.minutes_ago)
        names = {"tenant": call.tenant, "feature": call.feature, "key": keys[call.key].name,
                 "session": call.session}
        for budget in budgets:
            start = period_bounds(budget.period, budget.account.timezone, now)[0]
            if period_bounds(budget.period, budget.account.timezone, at)[0] != start:
                continue  # an earlier period's counter
            if budget.scope == "account":
                value = ""
            elif not (name := names[budget.scope]):
                continue  # a call without the header is in no tenant or feature budget
            elif budget.match != "*":
                if name != budget.match:
                    continue
                value = ""
            elif any(other.scope == budget.scope and other.period == budget.period and other.match == name
                     for other in budgets if other.match != "*"):
                continue  # a budget naming the value wins over '*'
            else:
                value = budget_value_of(budget_value_token(str(keys[call.key].pk) if budget.scope == "key" else name))
            spend[(budget.pk, value)] += call.cost_micros * MICRO
    return {k: v for k, v in spend.items() if v}


def _live(account: Account, budgets: list[Budget], now: datetime) -> dict[tuple[int, str], int]:
    """What enforcement left in Redis for the current periods, read key by key (no index, no model rule)."""
    client = sync_redis()
    found = {}
    for budget in budgets:
        period = BudgetPeriod.of(account.pk, budget.pk, period_bounds(budget.period, account.timezone, now)[0])
        for key in [period.base, *(k.decode() for k in client.scan_iter(match=f"{period.base}:*"))]:
            settled = int(client.hget(key, "s") or 0)
            if settled:
                found[(budget.pk, period.value_of(key))] = settled
    return found


def _rebuilt(account: Account, budgets: list[Budget], now: datetime) -> dict[tuple[int, str], int]:
    by_key = {key: nanos for key, (nanos, _) in budget_spend_by_counter(account_id=account.pk, now=now).items()}
    return _by_budget(account, budgets, now, by_key)


def _by_budget(account: Account, budgets: list[Budget], now: datetime, by_key: dict[str, int]) -> dict:
    out = {}
    for budget in budgets:
        period = BudgetPeriod.of(account.pk, budget.pk, period_bounds(budget.period, account.timezone, now)[0])
        for key, nanos in by_key.items():
            if nanos and (key == period.base or key.startswith(period.base + ":")):
                out[(budget.pk, period.value_of(key))] = nanos
    return out


def _alerted(account: Account, budgets: list[Budget], touched: Touched, now: datetime) -> dict[tuple[int, str], int]:
    counters = budget_counter_list(account=account, budgets=budgets, touched=touched, now=now)
    return _by_budget(account, budgets, now, dict(zip((c.key for c in counters),
                                                      budget_counter_spent(counters=counters), strict=True)))


def _shown(account: Account, now: datetime) -> dict[tuple[int, str], int]:
    rows = budget_status(account, now=now, top=len(VALUES) + len(KEY_NAMES))
    assert all(row["spent_usd"] == nanos_to_usd(usd_to_nanos(row["spent_usd"])) for row in rows)
    return {(row["budget"].pk, row["value"]): usd_to_nanos(row["spent_usd"]) for row in rows if row["spent_usd"]}


def _indexed(account: Account, budgets: list[Budget], now: datetime) -> dict[tuple[int, str], int]:
    """What the value indexes of '*' budgets list (the forecasts' and the dashboard's source)."""
    found = {}
    for budget in budgets:
        if budget.match == "*" and budget.scope != "account":
            period = BudgetPeriod.of(account.pk, budget.pk, period_bounds(budget.period, account.timezone, now)[0])
            for spender in budget_values_list(sync_redis(), period=period, limit=100):
                if spender.settled:
                    found[(budget.pk, spender.value)] = spender.settled
    return found


def _enforce(entry: AccountEntry, keys: list, plan: list[Call], now: datetime) -> tuple[list[Call], list[dict]]:
    """Each call reserved and settled as the gateway does; returns the admitted calls and every call's event."""
    key_entries = [KeyEntry(id=k.pk, account_id=entry.id, name=k.name, environment="", allowed_patterns=(),
                            expires_at=None, revoked=False, requests_per_minute=0, tokens_per_minute=0,
                            max_concurrent=0) for k in keys]
    admitted, events = [], []

    async def main() -> None:
        quota = Quota(PipelinedRedis(django_settings.REDIS_URL, timeout=5), reservation_ttl_ms=60_000)
        try:
            for n, call in enumerate(plan):
                at = (now - timedelta(minutes=call.minutes_ago)).timestamp()
                tenant, feature = (text_clean(call.tenant, TEXT_LIMITS["tenant"]),
                                   text_clean(call.feature, TEXT_LIMITS["feature"]))
                session = text_clean(call.session, TEXT_LIMITS["session"])
                rid = f"req_agree_{uuid.uuid4().hex[:24]}"
                call_plan = quota.plan_for(entry, key_entries[call.key], feature=feature, tenant=tenant,
                                           session=session, now=at)
                verdict = await quota.reserve(rid=rid, plan=call_plan, estimate_nanos=call.estimate_micros * MICRO,
                                              estimated_tokens=1)
                event = {"request_id": rid, "account_id": entry.id, "key_id": keys[call.key].pk, "tenant": tenant,
                         "feature": feature, "session": session, "provider": "openai", "model": "gpt-4o-mini",
                         "created_at": at,
                         "status_code": 200, "cost_usd": str(Decimal(call.cost_micros) / 10**6)}
                if isinstance(verdict, Denial):
                    event.update(status_code=429, denied_scope=verdict.scope, cost_usd="0")
                else:
                    assert isinstance(verdict, Reservation), n
                    await quota.settle(reservation=verdict, actual_nanos=call.cost_micros * MICRO, actual_tokens=1,
                                       event=b"")
                    admitted.append(call)
                events.append(event)
        finally:
            await quota.redis.close()

    asyncio.run(main())
    return admitted, events


@pytest.mark.django_db
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts, plan=calls, zone=st.sampled_from(ZONES))
def test_enforcement_rebuild_alerts_and_dashboard_agree(plans, layout, plan, zone) -> None:
    now = datetime.now(UTC)
    with transaction.atomic():  # each example on its own account, rolled back after
        account = Account.objects.create(slug=f"agree-{uuid.uuid4().hex[:12]}", name="Agree", plan=plans["pro"],
                                         timezone=zone)
        keys = [make_key(account, f"mk_test_agree_{uuid.uuid4().hex}", name=name) for name in KEY_NAMES]
        budgets = [Budget.objects.create(account=account, scope=scope, match=match, period=period,
                                         limit_usd=Decimal(micros) / 10**6, hard=hard)
                   for scope, match, period, micros, hard in layout]
        budget_counters_rebuild(account_id=account.pk, now=now)  # a new account's first call seeds its layout
        entry = AccountEntry(id=account.pk, timezone=zone, monthly_request_limit=0,
                             on_redis_unavailable="default", allow_unmetered_routes=False, endpoints={},
                             budgets=tuple(BudgetEntry.of(b) for b in budgets), prices={})

        admitted, events = _enforce(entry, keys, plan, now)
        usage_record_batch(events=events)
        budgets = list(Budget.objects.filter(account=account).select_related("account"))
        touched = Touched(tenants=frozenset(e["tenant"] for e in events),
                          features=frozenset(e["feature"] for e in events),
                          sessions=frozenset(e["session"] for e in events),
                          key_ids=frozenset(e["key_id"] for e in events))

        expected = _oracle(budgets, keys, admitted, now)
        event(f"{len(admitted)} of {len(plan)} calls admitted, {sum(1 for k in expected if k[1])} '*' counters")
        assert _live(account, budgets, now) == expected
        assert _rebuilt(account, budgets, now) == expected
        assert _alerted(account, budgets, touched, now) == expected
        assert _shown(account, now) == expected
        assert _indexed(account, budgets, now) == {k: v for k, v in expected.items() if k[1]}

        # Redis lost its data: the rebuild brings back the counters and the value indexes alike.
        client = sync_redis()
        for key in client.scan_iter(match=f"tk:{{a:{account.pk}}}:*"):
            client.delete(key)
        budget_counters_rebuild(account_id=account.pk, now=now)
        assert _live(account, budgets, now) == expected
        assert _shown(account, now) == expected
        assert _indexed(account, budgets, now) == {k: v for k, v in expected.items() if k[1]}
        transaction.set_rollback(True)

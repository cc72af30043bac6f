"""Budget layout edges found in review: a value spelt like the wildcard, soft-only layouts after a key-format
change, and alert claims that must survive the counters moving to another key format."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from django.conf import settings

from proxy.budgets import BudgetLayout, BudgetPeriod, alert_claim, alert_claim_base, budget_counter_key
from proxy.directory import AccountEntry, BudgetEntry
from proxy.quota import Quota, Unseeded
from proxy.redis_pipeline import PipelinedRedis

from ..support import account_entry, key_entry

WILDCARD_TENANTS = BudgetEntry(id=7, scope="tenant", match="*", period="month", limit_nanos=10**9, hard=True)
SOFT = BudgetEntry(id=8, scope="account", match="", period="month", limit_nanos=10**12, hard=False)
KEY = key_entry(4, account_id=515151)


def account(*budgets: BudgetEntry) -> AccountEntry:
    return account_entry(515151, budgets=budgets)


def test_a_tenant_called_star_has_its_own_counter_under_the_wildcard_budget() -> None:
    layout = BudgetLayout(account(WILDCARD_TENANTS).budgets)
    [(budget, value)] = layout.counters_for_call(key_id=KEY.id, key_name=KEY.name, feature="", tenant="*")
    assert (budget, value) == (WILDCARD_TENANTS, "*")  # not "" — the counter every tenant would share


def test_alert_claims_name_counters_as_the_first_key_format_did() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    first_format = f"tk:{{a:3}}:b:9:{int(start.timestamp())}:globex"
    assert alert_claim_base(budget_counter_key(3, 9, start, "globex")) == first_format


@pytest.mark.django_db
def test_a_soft_only_layout_is_seeded_before_its_counters_are_used() -> None:
    async def main() -> None:
        quota = Quota(PipelinedRedis(settings.REDIS_URL, timeout=5), reservation_ttl_ms=60_000)
        try:
            plan = quota.plan_for(account(SOFT), KEY, feature="", tenant="", now=time.time())
            with pytest.raises(Unseeded):
                await quota.reserve(rid="r1", plan=plan, estimate_nanos=10, estimated_tokens=1)
        finally:
            await quota.redis.close()

    asyncio.run(main())


@pytest.mark.parametrize("value", ["", "t100", "team:a|b", "l5", "x" * 500])
def test_an_alert_claim_names_the_counter_it_was_made_for(value: str) -> None:
    period = BudgetPeriod.of(3, 9, datetime(2026, 12, 1, tzinfo=UTC))
    counter = period.counter_key(value)
    # Also when the budget's match changed since: the claim's shape says whether it named a value.
    assert period.claimed_key(alert_claim(counter, "t100", "l5"), parts=2) == counter
    assert period.value_of(counter) == (value if len(value) < 100 else counter.rpartition(":")[2])

"""Readers of '*' budget counters (dashboard, forecasts) show the tenant or feature a counter key holds
encoded as the client sent it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from alerts.evaluate import budget_forecasts_check
from billing.dashboard.selectors import budget_status
from billing.models import Budget
from proxy.periods import period_bounds
from proxy.quota import budget_counter_key
from tokonomics.redis_client import sync_redis

TENANTS = ["team:a|b{x}", "%7C", "#1", "ümlaut\nnew line", "x" * 500]


@pytest.mark.django_db
def test_dashboard_and_forecasts_name_each_tenant_as_sent(acme) -> None:  # type: ignore[no-untyped-def]
    budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="day", limit_usd=Decimal(10),
                                   alert_at=[100])
    now = datetime(2026, 3, 4, 12, tzinfo=UTC)
    start, _ = period_bounds("day", acme.timezone, now)
    for n, tenant in enumerate(TENANTS):
        sync_redis().hset(budget_counter_key(acme.pk, budget.pk, start, tenant), "s", (n + 6) * 10**9)

    shown = {row["value"]: row["spent_usd"] for row in budget_status(acme, now=now)}
    assert {value: shown[value] for value in TENANTS[:4]} == {t: Decimal(n + 6) for n, t in enumerate(TENANTS[:4])}
    [hashed] = set(shown) - set(TENANTS)  # too long to keep in a key: shown as its hash
    assert hashed.startswith("#") and shown[hashed] == Decimal(10)

    warned = {event.payload["data"]["value"] for event in budget_forecasts_check(now=now)}
    assert warned == set(TENANTS[:4])  # the hashed one has spent 10 of 10: past forecasting

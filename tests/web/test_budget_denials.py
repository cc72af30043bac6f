"""Issue 15 §2: denials people understand — the Budgets page shows spend, what calls in flight hold
reserved and what remains, per budget and per value of a '*' budget; a denied call shows the estimate it
asked to reserve and the scope that refused it; the budgets docs explain reservations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse

from billing.models import Budget, UsageRecord
from billing.usage.records import usage_record_batch
from proxy.budgets import BudgetPeriod, usd_to_nanos
from proxy.periods import period_bounds
from tokonomics.redis_client import sync_redis

from ..support import usage_event

pytestmark = pytest.mark.django_db


def _counter(account, budget: Budget, *, spent: str, reserved: str, value: str = "") -> None:
    start, _ = period_bounds(budget.period, account.timezone, datetime.now(UTC))
    period = BudgetPeriod.of(account.pk, budget.pk, start)
    key = period.counter_key(value)
    sync_redis().hset(key, mapping={"s": usd_to_nanos(Decimal(spent)), "r": usd_to_nanos(Decimal(reserved))})
    if value:
        sync_redis().zadd(period.values_key, {key.rsplit(":", 1)[1]: usd_to_nanos(Decimal(spent))})


def _budgets_page(client, user, account, **params) -> str:
    client.force_login(user)
    response = client.get(reverse("budget_list", args=[account.slug]), params)
    assert response.status_code == 200
    return response.content.decode()


def test_budgets_page_shows_spend_reserved_and_remaining(client, alice, acme) -> None:
    budget = Budget.objects.create(account=acme, scope="key", match="prod-bot", period="month",
                                   limit_usd=Decimal("10"), hard=True)
    _counter(acme, budget, spent="5.30", reserved="4.50")
    body = _budgets_page(client, alice, acme)
    row = body.split(f'id="budget-{budget.pk}"')[1].split("</tr>")[0]
    assert "$5.30" in row and "$4.50" in row and "$0.20" in row  # 10 − 5.30 − 4.50 remains for new calls
    assert "53%" in row


def test_budgets_page_shows_room_leased_to_proxy_workers(client, alice, acme) -> None:
    budget = Budget.objects.create(account=acme, scope="account", match="", period="month",
                                   limit_usd=Decimal("10"), hard=True)
    _counter(acme, budget, spent="2", reserved="3")
    start, _ = period_bounds(budget.period, acme.timezone, datetime.now(UTC))
    sync_redis().hset(BudgetPeriod.of(acme.pk, budget.pk, start).counter_key(), "l", usd_to_nanos(Decimal("2.5")))
    row = _budgets_page(client, alice, acme).split(f'id="budget-{budget.pk}"')[1].split("</tr>")[0]
    assert "$3.00" in row and "leased $2.50" in row and "$5.00" in row  # leased room is reserved room


def test_wildcard_budget_shows_top_five_of_all_values_with_a_link_to_all(client, alice, acme) -> None:
    budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="month",
                                   limit_usd=Decimal("1"), hard=True)
    for n in range(7):
        _counter(acme, budget, spent=f"0.{n + 1}", reserved="0", value=f"team-{n}")
    body = _budgets_page(client, alice, acme)
    assert "top 5 of 7" in body
    assert f"?values={budget.pk}" in body
    assert "team-6" in body and "team-0" not in body  # biggest spenders first
    everything = _budgets_page(client, alice, acme, values=budget.pk)
    assert all(f"team-{n}" in everything for n in range(7))
    dashboard = client.get(reverse("dashboard", args=["acme"])).content.decode()
    assert "top 5 of 7" in dashboard


def test_a_denied_call_shows_its_reservation_and_the_scope_that_refused_it(client, alice, acme) -> None:
    usage_record_batch(events=[usage_event(
        acme.pk, 1, prefix="req_denied", status_code=429, denied_scope="key_budget", cost_usd="0",
        reserved_usd="0.45", input_tokens=0, output_tokens=0,
        created_at=(datetime.now(UTC) - timedelta(minutes=1)).timestamp())])
    assert UsageRecord.objects.get(request_id="req_denied_1").reserved_usd == Decimal("0.45")
    client.force_login(alice)
    body = client.get(reverse("dashboard", args=["acme"])).content.decode()
    recent = body.split("Recent calls")[1]
    assert "denied" in recent and "key budget" in recent and "$0.45" in recent
    assert "reserve" in recent


def test_budgets_page_links_the_docs_that_explain_reservations(client, alice, acme) -> None:
    body = _budgets_page(client, alice, acme)
    assert "docs/budgets.md" in body or "/docs/budgets" in body
    doc = (Path(__file__).parents[2] / "docs" / "budgets.md").read_text()
    assert "max_tokens" in doc and "reserv" in doc


def test_outsider_cannot_list_another_accounts_budget_values(client, charlie, acme) -> None:
    budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="month",
                                   limit_usd=Decimal("1"), hard=True)
    client.force_login(charlie)
    assert client.get(reverse("budget_list", args=["acme"]), {"values": budget.pk}).status_code == 404


def test_a_wildcard_key_budget_names_its_keys(client, alice, acme) -> None:
    from ..support import make_key

    key = make_key(acme, "mk_budget_values_named_0000000", name="prod-bot")
    budget = Budget.objects.create(account=acme, scope="key", match="*", period="month",
                                   limit_usd=Decimal("1"), hard=True)
    _counter(acme, budget, spent="0.25", reserved="0.5", value=str(key.pk))
    body = _budgets_page(client, alice, acme)
    row = body.split('class="budget-value"')[1].split("</tr>")[0]
    assert "prod-bot" in row and "$0.25" in row and "$0.50" in row and "$0.25</td>" in row.split("$0.50")[1]

"""`budget.downgraded` (CONTRACT §6): the first call a budget downgraded fires it, once per budget (and value)
per period, signed, to subscribed channels only."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from alerts.denial_events import denial_events_fire
from alerts.models import AlertEvent
from billing.models import Budget
from proxy.periods import period_bounds

from .conftest import WebhookReceiver, webhook_channel


@pytest.mark.django_db
def test_the_first_downgrade_of_a_period_fires_one_event(acme, receiver: WebhookReceiver) -> None:
    budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="day", limit_usd=Decimal("5"),
                                   hard=True, on_exceed="downgrade", downgrade_to="gpt-4o-mini", downgrade_at=80)
    channel = webhook_channel(acme, receiver, name="hooks")
    channel.event_types = ["budget.downgraded"]
    channel.save()
    now = datetime.now(UTC).timestamp()
    call = {"account_id": acme.pk, "key_id": None, "tenant": "initech", "feature": "", "created_at": now,
            "downgraded_from": "gpt-4o", "downgrade_budget_id": budget.pk}
    fired = denial_events_fire(events=[call, {**call, "created_at": now + 1}, {**call, "tenant": "globex"}])
    assert [e.payload["data"]["value"] for e in fired] == ["initech", "globex"]
    data = fired[0].payload["data"]
    assert fired[0].payload["type"] == AlertEvent.Type.BUDGET_DOWNGRADED == "budget.downgraded"
    assert (data["downgraded_from"], data["downgrade_to"], data["budget"]["downgrade_at"]) == (
        "gpt-4o", "gpt-4o-mini", 80)
    start, _ = period_bounds("day", "UTC", datetime.fromtimestamp(now, UTC))
    assert data["period_start"] == start.isoformat()
    assert denial_events_fire(events=[{**call, "created_at": now + 2}]) == []  # once per period


@pytest.mark.django_db
def test_no_channel_takes_it_no_event_is_stored(acme) -> None:
    budget = Budget.objects.create(account=acme, scope="account", period="day", limit_usd=Decimal("5"), hard=True,
                                   on_exceed="downgrade", downgrade_to="gpt-4o-mini")
    call = {"account_id": acme.pk, "key_id": None, "created_at": datetime.now(UTC).timestamp(),
            "downgraded_from": "gpt-4o", "downgrade_budget_id": budget.pk}
    assert denial_events_fire(events=[call]) == []
    assert not AlertEvent.objects.exists()

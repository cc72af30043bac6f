"""Burn rate: an agent stuck in a loop pages; steady traffic and small change do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alerts.evaluate import burn_rate_check
from alerts.models import AlertEvent, AlertRule
from billing.models import UsageRecord

from ..support import usage_record_build
from .conftest import payload_problems, webhook_channel

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC).replace(microsecond=0)


def _records(account, feature: str, *, count: int, cost: str, since: timedelta, until: timedelta,
             at: datetime = NOW) -> None:
    """`count` calls of `feature`, each costing `cost`, spread evenly from at - since to at - until."""
    step = (since - until) / count
    UsageRecord.objects.bulk_create([
        usage_record_build(request_id=f"req_{feature}_{at.timestamp():.0f}_{since.total_seconds():.0f}_{n}",
                           account=account, feature=feature, provider="openai", model="gpt-4o",
                           cost_usd=Decimal(cost), status_code=200, created_at=at - since + step * n)
        for n in range(count)
    ])


@pytest.fixture
def traffic(acme):
    day, window = timedelta(hours=24, minutes=15), timedelta(minutes=15)
    # agent-loop: quiet all day ($0.96 = $0.01 a window), then $12 in the last 15 minutes.
    _records(acme, "agent-loop", count=96, cost="0.01", since=day, until=window)
    _records(acme, "agent-loop", count=400, cost="0.03", since=window, until=timedelta(0))
    # search: a steady $2 every 15 minutes, the last window included.
    _records(acme, "search", count=960, cost="0.2", since=day, until=window)
    _records(acme, "search", count=10, cost="0.2", since=window, until=timedelta(0))
    # summarize: new today and far above its (empty) baseline, but $0.50 is under the $1 floor.
    _records(acme, "summarize", count=5, cost="0.1", since=window, until=timedelta(0))
    return acme


def test_runaway_feature_pages_once_and_normal_traffic_does_not(
    traffic, receiver, django_capture_on_commit_callbacks
) -> None:
    webhook_channel(traffic, receiver)
    AlertRule.objects.create(account=traffic, scope="feature", match="*", window_minutes=15,
                             multiplier=Decimal("5"), floor_usd=Decimal("1"))
    with django_capture_on_commit_callbacks(execute=True):
        [event] = burn_rate_check(now=NOW)
    data = event.payload["data"]
    assert event.type == AlertEvent.Type.BURN_RATE
    assert (data["value"], data["window_spend_usd"], data["usual_window_spend_usd"], data["ratio"]) == (
        "agent-loop", "12", "0.01", "1200")
    [delivered] = receiver.wait_for(1)
    assert delivered.problems == [] and payload_problems(delivered.payload) == []
    assert delivered.payload["type"] == "spend.burn_rate"

    with django_capture_on_commit_callbacks(execute=True):
        assert burn_rate_check(now=NOW + timedelta(minutes=1)) == []  # at most one page an hour
    assert len(receiver.deliveries) == 1


def test_at_most_one_page_in_any_hour_not_per_clock_hour(acme, django_capture_on_commit_callbacks) -> None:
    """A runaway caught at 08:59:30 is not paged again at 09:00:30 (CI ran the test above across an hour and
    got a second page), and is paged again once an hour has passed and it still runs away."""
    edge = NOW.replace(minute=0, second=0) - timedelta(seconds=30)
    day, window = timedelta(hours=24, minutes=15), timedelta(minutes=15)
    _records(acme, "agent-loop", count=96, cost="0.01", since=day, until=window, at=edge)
    _records(acme, "agent-loop", count=400, cost="0.03", since=window, until=timedelta(0), at=edge)
    AlertRule.objects.create(account=acme, scope="feature", match="*", window_minutes=15,
                             multiplier=Decimal("5"), floor_usd=Decimal("1"))
    with django_capture_on_commit_callbacks(execute=True):
        assert [e.payload["data"]["value"] for e in burn_rate_check(now=edge)] == ["agent-loop"]
        assert burn_rate_check(now=edge + timedelta(minutes=1)) == []  # the next clock hour
        assert burn_rate_check(now=edge + timedelta(minutes=59)) == []
        later = edge + timedelta(minutes=61)  # still looping: $12 more in the last 15 minutes
        _records(acme, "agent-loop", count=400, cost="0.03", since=window, until=timedelta(0), at=later)
        assert [e.payload["data"]["value"] for e in burn_rate_check(now=later)] == ["agent-loop"]
    assert AlertEvent.objects.filter(account=acme, type=AlertEvent.Type.BURN_RATE).count() == 2


def test_rule_naming_one_feature_watches_only_it(traffic) -> None:
    AlertRule.objects.create(account=traffic, scope="feature", match="search", floor_usd=Decimal("1"))
    assert burn_rate_check(now=NOW) == []
    AlertRule.objects.create(account=traffic, scope="feature", match="agent-loop", floor_usd=Decimal("1"))
    assert [e.payload["data"]["value"] for e in burn_rate_check(now=NOW)] == ["agent-loop"]


def test_steady_spend_never_pages_even_when_high(acme) -> None:
    # $50 every window all day and now: expensive, but normal for this account.
    _records(acme, "batch", count=96 * 5, cost="10", since=timedelta(hours=24, minutes=15),
             until=timedelta(minutes=15))
    _records(acme, "batch", count=5, cost="10", since=timedelta(minutes=15), until=timedelta(0))
    AlertRule.objects.create(account=acme, scope="account", match="*", floor_usd=Decimal("1"))
    assert burn_rate_check(now=NOW) == []


def test_a_looping_agent_run_pages_per_session(acme, django_capture_on_commit_callbacks) -> None:
    """Issue 19 §3: a session rule catches the run that loops; a run spending under the floor does not page."""
    window = timedelta(minutes=15)
    UsageRecord.objects.bulk_create([
        usage_record_build(request_id=f"req_run_{session}_{n}", account=acme, session=session, provider="openai",
                           model="gpt-4o", cost_usd=Decimal(cost), status_code=200, created_at=NOW - window + step * n)
        for session, count, cost, step in (("run_loop", 200, "0.05", timedelta(seconds=4)),
                                           ("run_calm", 10, "0.05", timedelta(seconds=60)))
        for n in range(count)
    ])
    AlertRule.objects.create(account=acme, scope="session", match="*", window_minutes=15, floor_usd=Decimal("2"))
    with django_capture_on_commit_callbacks(execute=True):
        [event] = burn_rate_check(now=NOW)
    assert (event.payload["data"]["value"], event.payload["data"]["window_spend_usd"]) == ("run_loop", "10")
    assert burn_rate_check(now=NOW) == []  # once an hour per run

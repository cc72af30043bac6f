"""Webhook and Slack delivery to a real local receiver: Standard Webhooks signatures, the body's shape,
retries with backoff that stop at the first success."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from alerts.evaluate import Touched, budget_thresholds_check
from alerts.events import alert_event_dispatch, alert_retries_run, alert_test_send
from alerts.models import AlertChannel, AlertDelivery, AlertEvent
from alerts.notifiers.webhook import webhook_signature
from billing.models import Budget
from proxy.periods import period_bounds

from .conftest import Spender, WebhookReceiver, payload_problems, run_together, webhook_channel

pytestmark = pytest.mark.django_db


def _cross_half_of_a_10_usd_budget(account, capture) -> tuple[Budget, datetime]:
    budget = Budget.objects.create(account=account, scope="account", period="month", limit_usd=Decimal("10"),
                                   hard=True, alert_at=[50])
    now = datetime.now(UTC)
    Spender(account)("6.25", now=now)
    with capture(execute=True):
        budget_thresholds_check(account_id=account.pk, touched=Touched(), now=now)
    return budget, now


def test_signed_webhook_carries_the_contract_body(acme, receiver, django_capture_on_commit_callbacks) -> None:
    channel = webhook_channel(acme, receiver)
    budget, now = _cross_half_of_a_10_usd_budget(acme, django_capture_on_commit_callbacks)

    [delivery] = receiver.wait_for(1)
    assert delivery.problems == []
    event = AlertEvent.objects.get()
    assert delivery.webhook_id == event.webhook_id
    payload = delivery.payload
    assert payload["type"] == "budget.threshold_crossed"
    assert payload["version"] == 1
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
    start, end = period_bounds("month", "UTC", now)
    data = payload["data"]
    assert data["account"] == "acme"
    assert data["budget"] == {"id": budget.pk, "scope": "account", "match": "", "period": "month",
                              "limit_usd": "10", "hard": True}
    assert data["threshold_percent"] == 50
    assert data["spent_usd"] == "6.25"
    assert (data["period_start"], data["period_end"]) == (start.isoformat(), end.isoformat())
    [row] = AlertDelivery.objects.all()
    assert (row.channel, row.attempt, row.succeeded, row.status_code, row.next_attempt_at) == (
        channel, 1, True, 200, None)


def test_receiver_rejects_tampered_and_replayed_deliveries(acme, receiver, django_capture_on_commit_callbacks) -> None:
    # The receiver's checks are what the other tests lean on: show that they do reject.
    webhook_channel(acme, receiver)
    _cross_half_of_a_10_usd_budget(acme, django_capture_on_commit_callbacks)
    [genuine] = receiver.wait_for(1)
    assert receiver.secret is not None

    def resend(body: bytes, timestamp: int, signature: str | None = None) -> int:
        signature = signature or _signature_of(receiver, genuine.webhook_id, timestamp, body)
        headers = {"webhook-id": genuine.webhook_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": signature, "content-type": "application/json"}
        return httpx.post(receiver.url, content=body, headers=headers).status_code

    now = int(time.time())
    assert resend(genuine.body, now) == 200
    tampered = genuine.body.replace(b'"6.25"', b'"0.01"')
    assert resend(tampered, now, signature=_signature_of(receiver, genuine.webhook_id, now, genuine.body)) == 401
    assert resend(genuine.body, now - 600) == 401  # correctly signed, but ten minutes old
    assert resend(genuine.body, now, signature="v1," + "A" * 44) == 401


def _signature_of(receiver: WebhookReceiver, webhook_id: str, timestamp: int, body: bytes) -> str:
    assert receiver.secret is not None
    return webhook_signature(secret=receiver.secret, webhook_id=webhook_id, timestamp=timestamp, body=body)


def test_failed_delivery_is_retried_with_the_same_id_until_it_succeeds_once(
    acme, receiver, django_capture_on_commit_callbacks
) -> None:
    channel = webhook_channel(acme, receiver)
    receiver.fail_next = 2
    _cross_half_of_a_10_usd_budget(acme, django_capture_on_commit_callbacks)

    # Backoff base is 0.2 s in tests: attempts at ~0, 0.2 and 0.6 s; then keep polling for two more
    # backoff periods to show nothing is sent after the success.
    deadline = time.monotonic() + 10
    while not receiver.accepted and time.monotonic() < deadline:
        alert_retries_run()
        time.sleep(0.02)
    quiet_until = time.monotonic() + 1.5
    while time.monotonic() < quiet_until:
        alert_retries_run()
        time.sleep(0.05)

    event = AlertEvent.objects.get()
    assert [d.status for d in receiver.deliveries] == [500, 500, 200]
    assert {d.webhook_id for d in receiver.deliveries} == {event.webhook_id}
    assert len({d.body for d in receiver.deliveries}) == 1
    rows = list(AlertDelivery.objects.filter(event=event, channel=channel).order_by("attempt"))
    assert [(r.attempt, r.succeeded, r.status_code) for r in rows] == [(1, False, 500), (2, False, 500), (3, True, 200)]
    assert all(r.next_attempt_at is None for r in rows)
    gaps = [b.created_at - a.created_at for a, b in zip(rows, rows[1:], strict=False)]
    assert gaps[0].total_seconds() >= 0.2 and gaps[1].total_seconds() >= 0.4  # exponential backoff


def test_unreachable_receiver_is_retried_later(acme, receiver, django_capture_on_commit_callbacks) -> None:
    channel = webhook_channel(acme, receiver)
    channel.url = "http://127.0.0.1:1/hook"  # nothing listens there
    channel.save()
    _cross_half_of_a_10_usd_budget(acme, django_capture_on_commit_callbacks)
    [row] = AlertDelivery.objects.all()
    assert not row.succeeded and row.status_code is None and "Connect" in row.error
    assert row.next_attempt_at is not None


def test_budget_naming_channels_alerts_only_those(acme, receiver, django_capture_on_commit_callbacks) -> None:
    with WebhookReceiver(secret=receiver.secret) as other:
        webhook_channel(acme, receiver, name="everything")
        chosen = webhook_channel(acme, other, name="finance")
        budget = Budget.objects.create(account=acme, scope="account", period="day", limit_usd=Decimal("1"),
                                       alert_at=[100])
        budget.channels.set([chosen])
        Spender(acme)("1", now=datetime.now(UTC))
        with django_capture_on_commit_callbacks(execute=True):
            budget_thresholds_check(account_id=acme.pk, touched=Touched())
        [delivery] = other.wait_for(1)
        assert delivery.payload["type"] == "budget.exhausted"
        assert receiver.deliveries == []


def test_slack_compatible_channel_gets_a_text_message(acme, slack_receiver, django_capture_on_commit_callbacks) -> None:
    AlertChannel.objects.create(account=acme, name="ops-chat", kind=AlertChannel.Kind.SLACK, url=slack_receiver.url)
    _cross_half_of_a_10_usd_budget(acme, django_capture_on_commit_callbacks)
    [message] = slack_receiver.wait_for(1)
    assert message.payload == {"text": "acme: account budget at 50% ($6.25 of $10 this month)"}
    assert AlertDelivery.objects.get().succeeded


def test_every_payload_type_is_well_formed(acme) -> None:
    from alerts.payloads import alert_payload

    # Tiny amounts must not turn into exponent notation ("1E-7"), which many JSON decimal parsers refuse.
    payload = alert_payload("spend.burn_rate", {"account": "acme", "window_spend_usd": Decimal("0.000000100"),
                                                "floor_usd": Decimal("0E-9"), "ratio": Decimal("12.5")})
    assert payload_problems(payload) == []
    assert payload["data"]["window_spend_usd"] == "0.0000001"
    assert payload["data"]["floor_usd"] == "0"


def _event_without_dispatch(account, capture) -> AlertEvent:
    Budget.objects.create(account=account, scope="account", period="month", limit_usd=Decimal("10"), alert_at=[50])
    Spender(account)("6", now=datetime.now(UTC))
    with capture(execute=False):  # the dispatch message is lost: a worker died, the broker was down
        [event] = budget_thresholds_check(account_id=account.pk, touched=Touched())
    return event


def test_event_whose_dispatch_was_lost_is_delivered_by_the_retry_sweep(
    acme, receiver, django_capture_on_commit_callbacks
) -> None:
    webhook_channel(acme, receiver)
    event = _event_without_dispatch(acme, django_capture_on_commit_callbacks)
    alert_retries_run()
    assert receiver.deliveries == []  # just created: its own dispatch task may still be on its way
    AlertEvent.objects.filter(pk=event.pk).update(created_at=event.created_at - timedelta(minutes=2))
    alert_retries_run()
    [delivery] = receiver.wait_for(1)
    assert delivery.webhook_id == event.webhook_id
    alert_retries_run()
    assert len(receiver.deliveries) == 1
    assert [(d.attempt, d.succeeded) for d in AlertDelivery.objects.all()] == [(1, True)]


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatches_of_one_event_deliver_it_once(plans, receiver, monkeypatch) -> None:
    from billing.models import Account

    account = Account.objects.create(slug="acme", name="Acme", plan=plans["pro"])
    webhook_channel(account, receiver)
    with monkeypatch.context() as patch:
        patch.setattr("alerts.events._dispatch_later", lambda event_id: None)
        event = alert_test_send(channel=AlertChannel.objects.get())
    AlertEvent.objects.filter(pk=event.pk).update(created_at=event.created_at - timedelta(minutes=2))
    receiver.delay_seconds = 0.3
    dispatch = lambda: alert_event_dispatch(event_id=event.pk)  # noqa: E731
    # The task, the same task redelivered, and the sweep for stranded events, all at once.
    run_together(dispatch, dispatch, alert_retries_run)
    assert len(receiver.deliveries) == 1
    assert [(d.attempt, d.succeeded) for d in AlertDelivery.objects.all()] == [(1, True)]

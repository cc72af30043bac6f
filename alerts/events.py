"""Alert events: created once (unique dedupe key), delivered to every channel, failed attempts
retried with exponential backoff for up to 24 hours, every attempt kept."""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, QuerySet
from django.dispatch import Signal
from django.utils import timezone

from alerts.models import AlertChannel, AlertDelivery, AlertEvent
from alerts.notifiers import NOTIFIERS, DeliveryResult
from alerts.payloads import alert_payload

log = logging.getLogger(__name__)

RETRY_WINDOW = timedelta(hours=24)
MAX_BACKOFF_SECONDS = 3600
SEND_LEASE = timedelta(minutes=5)  # well past any notifier's timeout
DISPATCH_GRACE = timedelta(minutes=1)  # an event's own dispatch task normally runs within a second

# Sent after the commit that stored an alert event, with its `event_id`: its delivery is queued
# (alerts/signals.py), so this module never imports the Celery tasks that import it.
alert_event_created = Signal()


def _new_webhook_id() -> str:
    return "msg_" + os.urandom(12).hex()


def alert_event_create(
    *,
    account_id: int,
    event_type: str,
    dedupe_key: str,
    data: dict[str, Any],
    channel_ids: list[int] | None = None,
) -> AlertEvent | None:
    """Create the event unless one with this dedupe key exists (then None): the unique row is the
    claim that makes an alert fire once, whatever the number of workers."""
    try:
        with transaction.atomic():
            event = AlertEvent.objects.create(
                account_id=account_id,
                type=event_type,
                dedupe_key=dedupe_key[:300],
                webhook_id=_new_webhook_id(),
                payload=alert_payload(event_type, data),
            )
            channels = AlertChannel.objects.filter(account_id=account_id, enabled=True)
            if channel_ids:
                channels = channels.filter(pk__in=channel_ids)
            if event_type != AlertEvent.Type.TEST:  # the test button reaches the channel it is pressed on
                channels = channels.filter(pk__in=_subscribed(channels, event_type))
            event.channels.set(channels)
    except IntegrityError:
        return None
    transaction.on_commit(lambda: _dispatch_later(event.pk))
    log.info("alert %s fired for account %s (%s)", event_type, account_id, dedupe_key)
    return event


def alert_subscribed(*, account_id: int, event_type: str) -> bool:
    """Whether an enabled channel of the account is sent this type: opt-in events nobody listens for are
    not stored at all (a busy key would otherwise leave a `rate_limit.exceeded` row a minute)."""
    return bool(_subscribed(AlertChannel.objects.filter(account_id=account_id, enabled=True), event_type))


def _subscribed(channels: QuerySet[AlertChannel], event_type: str) -> list[int]:
    """The ids of those channels that take `event_type`. Read in Python, not with a JSON `contains` lookup,
    which SQLite (the first run's database) does not have; an account has a handful of channels."""
    return [pk for pk, types in channels.values_list("pk", "event_types") if event_type in (types or ())]


def _dispatch_later(event_id: int) -> None:
    alert_event_created.send(sender=AlertEvent, event_id=event_id)


def alert_event_dispatch(*, event_id: int) -> int:
    """Make the first delivery attempt to each channel of the event that has none yet. Safe to run
    twice at once (a redelivered task, the sweep): each attempt is claimed before it is made.
    Returns attempts made."""
    event = AlertEvent.objects.filter(pk=event_id).select_related("account").first()
    if event is None:
        return 0
    attempts = 0
    for channel in event.channels.exclude(deliveries__event=event):
        if alert_delivery_attempt(event=event, channel=channel, attempt=1) is not None:
            attempts += 1
    return attempts


def _backoff(attempt: int) -> timedelta:
    base = settings.ALERT_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))


def alert_delivery_attempt(*, event: AlertEvent, channel: AlertChannel, attempt: int) -> AlertDelivery | None:
    """One attempt, claimed first: its row (unique per event, channel and attempt) is written before
    anything is sent, so two workers never send the same attempt; None when another worker has it.
    Then records the outcome and, when it failed, when the next one is due (none after 24 h)."""
    try:
        with transaction.atomic():
            delivery = AlertDelivery.objects.create(
                event=event, channel=channel, attempt=attempt, succeeded=False, error="sending…",
                # Should this process die mid-send, the attempt is retried once the lease is over.
                next_attempt_at=timezone.now() + SEND_LEASE,
            )
    except IntegrityError:
        return None
    started = time.perf_counter()
    try:
        result = NOTIFIERS[channel.kind].send(channel=channel, event=event)
    except Exception as exc:
        # A bug or a broken channel (an undecryptable secret…) is a failed attempt like any other.
        log.exception("alert %s: the %s notifier raised", event.webhook_id, channel.kind)
        result = DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
    delivery.next_attempt_at = None
    if not result.succeeded:
        candidate = timezone.now() + _backoff(attempt)
        if candidate < event.created_at + RETRY_WINDOW:
            delivery.next_attempt_at = candidate
    delivery.succeeded = result.succeeded
    delivery.status_code = result.status_code
    delivery.error = result.error
    delivery.duration_ms = int((time.perf_counter() - started) * 1000)
    delivery.save(update_fields=["succeeded", "status_code", "error", "duration_ms", "next_attempt_at"])
    return delivery


def _stranded_event_ids(limit: int) -> list[int]:
    """Events older than DISPATCH_GRACE with a channel never attempted: their dispatch task was lost
    (the broker was down when they fired, or the worker died before sending)."""
    now = timezone.now()
    return list(
        AlertEvent.objects.filter(created_at__lte=now - DISPATCH_GRACE, created_at__gt=now - RETRY_WINDOW)
        .annotate(channel_count=Count("channels", distinct=True),
                  attempted=Count("deliveries__channel", distinct=True))
        .filter(channel_count__gt=F("attempted"))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def alert_retries_run(*, limit: int = 100) -> int:
    """Retry failed deliveries that are due, and make the first attempts of stranded events. Each
    retry is claimed by clearing its `next_attempt_at` with a conditional UPDATE, and each attempt
    claims its own row, so two workers never send the same one."""
    due = AlertDelivery.objects.filter(next_attempt_at__lte=timezone.now()).order_by("next_attempt_at")
    retried = 0
    for delivery in due.select_related("event", "channel")[:limit]:
        claimed = AlertDelivery.objects.filter(pk=delivery.pk, next_attempt_at__isnull=False).update(
            next_attempt_at=None
        )
        if claimed:
            alert_delivery_attempt(event=delivery.event, channel=delivery.channel, attempt=delivery.attempt + 1)
            retried += 1
    for event_id in _stranded_event_ids(limit):
        retried += alert_event_dispatch(event_id=event_id)
    if retried:
        log.info("alert_retries_run retried %d deliveries", retried)
    return retried


def alert_test_send(*, channel: AlertChannel) -> AlertEvent:
    """The 'send test alert' button: a `test` event to this one channel."""
    event = alert_event_create(
        account_id=channel.account_id,
        event_type=AlertEvent.Type.TEST,
        dedupe_key=f"test:{channel.pk}:{_new_webhook_id()}",
        data={"account": channel.account.slug, "channel": channel.name},
        channel_ids=[channel.pk],
    )
    assert event is not None
    return event

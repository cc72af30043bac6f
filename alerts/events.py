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
from django.utils import timezone

from alerts.models import AlertChannel, AlertDelivery, AlertEvent
from alerts.notifiers import NOTIFIERS
from alerts.payloads import alert_payload

log = logging.getLogger(__name__)

RETRY_WINDOW = timedelta(hours=24)
MAX_BACKOFF_SECONDS = 3600


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
            channels = AlertChannel.objects.filter(account_id=account_id)
            if channel_ids:
                channels = channels.filter(pk__in=channel_ids)
            event.channels.set(channels)
    except IntegrityError:
        return None
    transaction.on_commit(lambda: _dispatch_later(event.pk))
    log.info("alert %s fired for account %s (%s)", event_type, account_id, dedupe_key)
    return event


def _dispatch_later(event_id: int) -> None:
    from alerts.tasks import alert_event_dispatch_task

    alert_event_dispatch_task.delay(event_id)


def alert_event_dispatch(*, event_id: int) -> int:
    """Make the first delivery attempt to each channel of the event. Returns attempts made."""
    event = AlertEvent.objects.filter(pk=event_id).select_related("account").first()
    if event is None:
        return 0
    attempts = 0
    for channel in event.channels.all():
        if not AlertDelivery.objects.filter(event=event, channel=channel).exists():
            alert_delivery_attempt(event=event, channel=channel, attempt=1)
            attempts += 1
    return attempts


def _backoff(attempt: int) -> timedelta:
    base = settings.ALERT_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))


def alert_delivery_attempt(*, event: AlertEvent, channel: AlertChannel, attempt: int) -> AlertDelivery | None:
    """One attempt; records it, and when it failed, when the next one is due (or none after 24 h)."""
    started = time.perf_counter()
    result = NOTIFIERS[channel.kind].send(channel=channel, event=event)
    next_at = None
    if not result.succeeded:
        candidate = timezone.now() + _backoff(attempt)
        if candidate < event.created_at + RETRY_WINDOW:
            next_at = candidate
    try:
        return AlertDelivery.objects.create(
            event=event,
            channel=channel,
            attempt=attempt,
            succeeded=result.succeeded,
            status_code=result.status_code,
            error=result.error,
            duration_ms=int((time.perf_counter() - started) * 1000),
            next_attempt_at=next_at,
        )
    except IntegrityError:
        return None  # another worker made this attempt at the same moment


def alert_retries_run(*, limit: int = 100) -> int:
    """Retry failed deliveries that are due. Each is claimed by clearing its `next_attempt_at` with a
    conditional UPDATE, so two workers never retry the same one."""
    due = AlertDelivery.objects.filter(next_attempt_at__lte=timezone.now()).order_by("next_attempt_at")
    retried = 0
    for delivery in due.select_related("event", "channel")[:limit]:
        claimed = AlertDelivery.objects.filter(pk=delivery.pk, next_attempt_at__isnull=False).update(
            next_attempt_at=None
        )
        if claimed:
            alert_delivery_attempt(event=delivery.event, channel=delivery.channel, attempt=delivery.attempt + 1)
            retried += 1
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

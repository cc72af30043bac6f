"""What alerts watches: spend just recorded may cross a budget threshold, a budget whose limit changes
may have come back under its spend (`budget.resolved`), and a new alert event is to be delivered.

Connected in the web app and Celery only (alerts/apps.py): a proxy worker records no usage and fires no
alert, and must not load Celery or the notifiers."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save, pre_save

from alerts.denial_events import denial_events_fire
from alerts.evaluate import Touched, budget_thresholds_check
from alerts.events import alert_event_created
from alerts.guardrail_events import guardrail_events_fire
from alerts.key_events import key_change_event_create
from alerts.tasks import alert_event_dispatch_task, budget_resolved_check_task
from billing.models import Budget
from billing.usage.ledger import usage_recorded
from proxy.models import ApiKey
from proxy.services import api_key_changed

log = logging.getLogger(__name__)


def _remember_limit(sender: Any, instance: Any, **kwargs: Any) -> None:
    previous = None
    if instance.pk:
        previous = sender.objects.filter(pk=instance.pk).values_list("limit_usd", flat=True).first()
    instance._previous_limit_usd = previous


def _limit_changed(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    previous = getattr(instance, "_previous_limit_usd", None)
    if created or previous is None or previous == instance.limit_usd:
        return
    budget_id = instance.pk
    transaction.on_commit(lambda: budget_resolved_check_task.delay(budget_id))


def _thresholds_check(sender: Any, *, events: list[dict], **kwargs: Any) -> None:
    """Budget thresholds are checked right after the spend that crossed them is recorded."""
    by_account: dict[int, list[dict]] = {}
    for event in events:
        if event.get("cost_usd") not in (None, "0", "0E-9"):
            by_account.setdefault(event["account_id"], []).append(event)
    for account_id, batch in by_account.items():
        touched = Touched(
            tenants=frozenset(e.get("tenant", "") for e in batch),
            features=frozenset(e.get("feature", "") for e in batch),
            sessions=frozenset(e.get("session", "") for e in batch),
            key_ids=frozenset(e["key_id"] for e in batch if e.get("key_id")),
        )
        try:
            budget_thresholds_check(account_id=account_id, touched=touched)
        except Exception:
            # Alerts must never hold up the ledger; the next batch checks the same counters again.
            log.exception("budget threshold check failed for account %s", account_id)


def _denials_check(sender: Any, *, events: list[dict], **kwargs: Any) -> None:
    """The first denials of a window become `rate_limit.exceeded` / `budget.denied` events."""
    try:
        denial_events_fire(events=events)
    except Exception:
        # Like thresholds: an alert must never hold up the ledger.
        log.exception("denial events failed for a batch of %d usage events", len(events))


def _guardrails_check(sender: Any, *, events: list[dict], **kwargs: Any) -> None:
    """Calls with guardrail hits become `guardrail.violation` events (one per key per minute)."""
    try:
        guardrail_events_fire(events=events)
    except Exception:
        log.exception("guardrail events failed for a batch of %d usage events", len(events))


def _key_changed(sender: Any, *, key: ApiKey, change: str, **kwargs: Any) -> None:
    key_change_event_create(key=key, change=change)


def _dispatch_queue(sender: Any, *, event_id: int, **kwargs: Any) -> None:
    alert_event_dispatch_task.delay(event_id)


def connect() -> None:
    pre_save.connect(_remember_limit, sender=Budget, dispatch_uid="alerts-budget-limit-before")
    post_save.connect(_limit_changed, sender=Budget, dispatch_uid="alerts-budget-limit-after")
    usage_recorded.connect(_thresholds_check, dispatch_uid="alerts-budget-thresholds")
    usage_recorded.connect(_denials_check, dispatch_uid="alerts-denial-events")
    usage_recorded.connect(_guardrails_check, dispatch_uid="alerts-guardrail-events")
    api_key_changed.connect(_key_changed, sender=ApiKey, dispatch_uid="alerts-key-events")
    alert_event_created.connect(_dispatch_queue, dispatch_uid="alerts-event-dispatch")

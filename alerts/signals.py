"""A budget whose limit changes may have come back under its spend: check for `budget.resolved`."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save, pre_save


def _remember_limit(sender: Any, instance: Any, **kwargs: Any) -> None:
    previous = None
    if instance.pk:
        previous = sender.objects.filter(pk=instance.pk).values_list("limit_usd", flat=True).first()
    instance._previous_limit_usd = previous


def _limit_changed(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    previous = getattr(instance, "_previous_limit_usd", None)
    if created or previous is None or previous == instance.limit_usd:
        return
    from alerts.tasks import budget_resolved_check_task

    budget_id = instance.pk
    transaction.on_commit(lambda: budget_resolved_check_task.delay(budget_id))


def connect() -> None:
    from billing.models import Budget

    pre_save.connect(_remember_limit, sender=Budget, dispatch_uid="alerts-budget-limit-before")
    post_save.connect(_limit_changed, sender=Budget, dispatch_uid="alerts-budget-limit-after")

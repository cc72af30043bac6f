"""Retention: raw usage records older than the account's retention are deleted in small batches
(short transactions, no long locks; resumable — a run cut short just leaves the rest for the next).
Hourly rollups are kept, so totals over longer periods stay visible."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import transaction

from billing.models import Account, UsageRecord

log = logging.getLogger(__name__)


def usage_retention_purge(*, now: datetime | None = None, batch_size: int = 5000) -> dict[str, int]:
    """Delete expired usage records of every account; returns {account slug: records deleted}."""
    now = now or datetime.now(UTC)
    deleted: dict[str, int] = {}
    for account in Account.objects.select_related("plan"):
        cutoff = now - timedelta(days=account.effective_retention_days)
        total = 0
        while True:
            with transaction.atomic():
                ids = list(
                    UsageRecord.objects.filter(account=account, created_at__lt=cutoff)
                    .order_by("created_at")
                    .values_list("pk", flat=True)[:batch_size]
                )
                if not ids:
                    break
                total += UsageRecord.objects.filter(pk__in=ids).delete()[0]
        if total:
            deleted[account.slug] = total
    log.info("usage_retention_purge deleted %d records (%s)", sum(deleted.values()), deleted or "none due")
    return deleted

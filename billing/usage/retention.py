"""Retention: raw usage records older than the account's retention are deleted in small batches
(short transactions, no long locks; resumable — a run cut short just leaves the rest for the next).
Hourly rollups are kept, so totals over longer periods stay visible."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Subquery

from billing.models import Account, UsageRecord

log = logging.getLogger(__name__)
# A century: further back than any record, and short of what datetime arithmetic (now - retention) can hold.
MAX_RETENTION_DAYS = 36_500


def usage_retention_purge(*, now: datetime | None = None, batch_size: int = 5000) -> dict[str, int]:
    """Delete expired usage records of every account; returns {account slug: records deleted}."""
    now = now or datetime.now(UTC)
    deleted: dict[str, int] = {}
    for account in Account.objects.select_related("plan"):
        cutoff = now - timedelta(days=account.effective_retention_days)
        total = 0
        expired = UsageRecord.objects.filter(account=account, created_at__lt=cutoff).order_by("created_at")
        while True:
            # One statement a batch (DELETE … WHERE id IN (SELECT … LIMIT n)): the ids never leave the database.
            batch = UsageRecord.objects.filter(pk__in=Subquery(expired.values("pk")[:batch_size]))
            with transaction.atomic():
                count = batch.delete()[0]
            if not count:
                break
            total += count
        if total:
            deleted[account.slug] = total
    log.info("usage_retention_purge deleted %d records (%s)", sum(deleted.values()), deleted or "none due")
    return deleted

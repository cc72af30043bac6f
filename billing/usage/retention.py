"""Retention: raw usage records older than the account's retention go; hourly rollups stay, so totals
over longer periods stay visible. On PostgreSQL a month every account is done with is dropped whole (its
partition detached and dropped: no dead rows, no bloat, no vacuum); what is left past an account's
retention sits in the edge months and is deleted in small batches (short transactions, no long locks;
resumable — a run cut short just leaves the rest for the next). SQLite: batched deletes only."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Subquery

from billing.models import Account, UsageRecord
from billing.usage.partitions import usage_partition_drop, usage_partitions, usage_partitions_ensure

log = logging.getLogger(__name__)
# A century: further back than any record, and short of what datetime arithmetic (now - retention) can hold.
MAX_RETENTION_DAYS = 36_500


def usage_retention_purge(*, now: datetime | None = None, batch_size: int = 5000) -> dict[str, int]:
    """Delete expired usage records of every account; returns {account slug: records deleted}."""
    now = now or datetime.now(UTC)
    accounts = list(Account.objects.select_related("plan"))
    cutoffs = {account.pk: now - timedelta(days=account.effective_retention_days) for account in accounts}
    deleted: Counter[str] = Counter()
    slugs = {account.pk: account.slug for account in accounts}
    for account_id, count in _partitions_drop(now=now, cutoffs=cutoffs).items():
        deleted[slugs[account_id]] += count
    for account in accounts:
        cutoff = cutoffs[account.pk]
        # The plain manager: a DELETE of the records alone, not through a join to their labels.
        expired = UsageRecord._base_manager.filter(account=account, created_at__lt=cutoff)
        # The ids come from the (account, created_at) index, oldest first; the outer created_at bound lets
        # PostgreSQL skip the partitions past the cutoff when it looks the ids up (the key is (id, created_at)).
        oldest = expired.order_by("created_at").values("pk")
        while True:
            # One statement a batch (DELETE … WHERE id IN (SELECT … LIMIT n)): the ids never leave the database.
            batch = expired.filter(pk__in=Subquery(oldest[:batch_size]))
            with transaction.atomic():
                count = batch.delete()[0]
            if not count:
                break
            deleted[account.slug] += count
    log.info("usage_retention_purge deleted %d records (%s)", sum(deleted.values()), dict(deleted) or "none due")
    return dict(deleted)


def _partitions_drop(*, now: datetime, cutoffs: dict[int, datetime]) -> Counter[int]:
    """Drop the monthly partitions that end before every account's cutoff (the longest retention decides);
    returns the records they held per account id. Nothing on SQLite."""
    usage_partitions_ensure(now=now)
    if not cutoffs:
        return Counter()
    earliest = min(cutoffs.values())
    dropped: Counter[int] = Counter()
    for partition in usage_partitions():
        if partition.end is not None and partition.end <= earliest:
            dropped.update(usage_partition_drop(partition=partition))
    return dropped

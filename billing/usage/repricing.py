"""Re-pricing stored usage after a price correction: every token class is kept per record, so a
period can be priced again with today's catalogue and overrides, at each call's own time."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from billing.models import PriceOverride, UsageRecord
from billing.usage.rollups import usage_rollup_reprice
from proxy.models import ProviderEndpoint
from proxy.pricing import PriceTable, price_usage
from proxy.usage import TokenUsage


def _overrides(account_ids: set[int]) -> dict[tuple[int, str, str], PriceTable]:
    return {
        (o.account_id, o.provider, o.model): PriceTable.from_override(
            input_per_mtok=o.input_per_mtok,
            output_per_mtok=o.output_per_mtok,
            cached_input_per_mtok=o.cached_input_per_mtok,
            cache_write_per_mtok=o.cache_write_per_mtok,
        )
        for o in PriceOverride.objects.filter(account_id__in=account_ids)
    }


def usage_record_reprice(*, records: QuerySet[UsageRecord], batch_size: int = 2000) -> tuple[int, int]:
    """Price the records again; returns (records seen, records whose cost changed).

    Denied calls, upstream errors and response-cache hits keep their zero cost. The rollups move with the
    records; Redis counters of a period still running are not touched here: rebuild them afterwards
    (billing.budgets.counters) if the period matters.
    """
    records = records.filter(status_code__lt=400, denied_scope="", cache_hit=False).order_by("pk")
    account_ids = set(records.values_list("account_id", flat=True).distinct())
    endpoints = {
        (e.account_id, e.slug): e for e in ProviderEndpoint.objects.filter(account_id__in=account_ids)
    }
    overrides = _overrides(account_ids)
    seen = changed = 0
    last_pk = 0
    while True:
        batch = list(records.filter(pk__gt=last_pk)[:batch_size])
        if not batch:
            return seen, changed
        updates = []
        for record in batch:
            endpoint = endpoints.get((record.account_id, record.provider))
            cost = price_usage(
                provider_id=(endpoint.pricing_provider or None) if endpoint else None,
                base_url=endpoint.base_url if endpoint else None,
                model=record.model,
                usage=TokenUsage(
                    input_tokens=record.input_tokens,
                    output_tokens=record.output_tokens,
                    cached_input_tokens=record.cached_input_tokens,
                    cache_write_tokens=record.cache_write_tokens,
                    reasoning_tokens=record.reasoning_tokens,
                ),
                at=record.created_at,
                override=overrides.get((record.account_id, record.provider, record.model)),
            )
            if cost != record.cost_usd:
                updates.append((record, record.cost_usd))
                record.cost_usd = cost
        with transaction.atomic():
            # The plain manager: an UPDATE of the records alone, not through a join to their labels.
            UsageRecord._base_manager.bulk_update([r for r, _ in updates], ["cost_usd"], batch_size=500)
            usage_rollup_reprice(changes=updates)
        seen += len(batch)
        changed += len(updates)
        last_pk = batch[-1].pk

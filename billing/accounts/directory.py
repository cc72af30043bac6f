"""An account as the proxy's directory caches it (proxy/directory.py), read from the database.

Installed into the proxy at startup (billing/apps.py): the proxy does not import billing.
"""

from __future__ import annotations

from billing.models import Account
from proxy.budgets import BudgetEntry
from proxy.directory import AccountEntry, EndpointEntry, RouteEntry, RouteTarget
from proxy.pricing import PriceTable
from proxy.response_cache import CacheSettings


def load_account(account_id: int) -> AccountEntry | None:
    """Called by the proxy's directory off the event loop, as a database_job (proxy/database_jobs.py)."""
    account = Account.objects.select_related("plan").filter(pk=account_id).first()
    if account is None:
        return None
    endpoints = {
        e.slug: EndpointEntry(e.slug, e.wire_format, e.base_url.rstrip("/"), e.pricing_provider, e.get_credential(),
                              dict(e.deployments or {}))
        for e in account.provider_endpoints.all()
    }
    budgets = tuple(BudgetEntry.of(b) for b in account.budgets.all())
    prices = {
        (p.provider, p.model): PriceTable.from_override(
            input_per_mtok=p.input_per_mtok,
            output_per_mtok=p.output_per_mtok,
            cached_input_per_mtok=p.cached_input_per_mtok,
            cache_write_per_mtok=p.cache_write_per_mtok,
        )
        for p in account.price_overrides.all()
    }
    routes = {
        r.name: RouteEntry(
            r.name, r.strategy,
            tuple(RouteTarget(t["endpoint"], t["model"], t.get("weight", 1), t.get("timeout_seconds"))
                  for t in r.targets if t["endpoint"] in endpoints),  # an endpoint deleted since is skipped
            r.max_attempts, r.deadline_seconds, r.retries, r.backoff_ms / 1000,
            cache_ttl_seconds=r.cache_ttl_seconds, cache_nonzero_temperature=r.cache_nonzero_temperature,
        )
        for r in account.routes.all()
    }
    return AccountEntry(
        id=account.pk,
        timezone=account.timezone,
        monthly_request_limit=account.plan.monthly_request_limit or 0,
        on_redis_unavailable=account.on_redis_unavailable,
        allow_unmetered_routes=account.allow_unmetered_routes,
        endpoints=endpoints,
        budgets=budgets,
        prices=prices,
        allow_unpriced_models=account.allow_unpriced_models,
        slug=account.slug,
        routes=routes,
        cache=CacheSettings(
            ttl_seconds=account.cache_ttl_seconds, max_entry_bytes=account.cache_max_entry_bytes,
            max_total_bytes=account.cache_max_total_bytes, nonzero_temperature=account.cache_nonzero_temperature,
        ) if account.cache_enabled else None,
    )

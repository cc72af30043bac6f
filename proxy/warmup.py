"""A new worker's warm-up, run by the ASGI lifespan start before the worker reports ready: without it the
first call on each worker paid ~150-250 ms (the price catalogue's import, the directory's database reads,
the Redis connection and script loads) that every later call is spared. Bounded by
TOKONOMICS_WARMUP_SECONDS; a slow or absent Redis or database is logged and the worker starts anyway, cold.

It opens no connection to any provider: an upstream connection costs the call's upstream time, not its
overhead, and a provider that sees connections without requests may count them against the account."""

from __future__ import annotations

import asyncio
import logging
import time

from django.conf import settings

from .context import ProxyContext
from .directory import CONFIG_VERSION_KEY, AccountEntry, KeyEntry, keys_recent_load
from .hooks import hooks_get
from .pricing import catalogue_price_table, default_max_output_tokens

log = logging.getLogger(__name__)

# Accounts of the preloaded keys loaded too; past this many, the rest load on their first call.
MAX_WARM_ACCOUNTS = 200


async def context_warm(ctx: ProxyContext, *, timeout: float | None = None) -> bool:
    """Warm `ctx` up; False when the warm-up did not finish in `timeout` seconds or a part of it failed."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(settings.TOKONOMICS_WARMUP_SECONDS if timeout is None else timeout):
            # The catalogue first, in a thread: its import is the largest part, and it needs neither Redis
            # nor the database, so it proceeds while they answer.
            outcomes: list[BaseException | None] = list(await asyncio.gather(
                asyncio.to_thread(_prices_warm, ()), _redis_warm(ctx), return_exceptions=True))
            # After Redis: the version it holds must be seen before the directory is filled.
            outcomes += await asyncio.gather(_directory_warm(ctx), return_exceptions=True)
    except TimeoutError:
        log.warning("the proxy's warm-up took longer than %.1f s: its first calls may be slower",
                    settings.TOKONOMICS_WARMUP_SECONDS if timeout is None else timeout)
        return False
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    for failure in failures:
        log.warning("part of the proxy's warm-up failed (%s: %s): its first calls may be slower",
                    type(failure).__name__, failure)
    if not failures:
        log.info("the proxy warmed up in %.0f ms", (time.perf_counter() - started) * 1000)
    return not failures


def _prices_warm(models: tuple[tuple[str, str, str], ...]) -> None:
    """The bundled catalogue imported and parsed; each (pricing provider, base URL, model) looked up."""
    catalogue_price_table(provider_id="openai", base_url=None, model="gpt-4o-mini")
    for provider_id, base_url, model in models:
        catalogue_price_table(provider_id=provider_id or None, base_url=base_url, model=model)
        default_max_output_tokens(provider_id or None, model)


async def _redis_warm(ctx: ProxyContext) -> None:
    """The connection open, the scripts in Redis's cache (the first EVALSHA would find them missing and
    send the whole script), and the configuration version seen, so the poll does not empty the cache the
    directory warm-up fills."""
    for script in ctx.quota.scripts():
        await ctx.redis.execute("SCRIPT", "LOAD", script.source)
    ctx.directory.observe_version(await ctx.redis.execute("GET", CONFIG_VERSION_KEY))


async def _directory_warm(ctx: ProxyContext) -> None:
    """The newest keys and their accounts in the directory, their budget counters seeded if Redis lacks them,
    then the prices of the models their endpoints name (Azure deployments)."""
    limit = settings.TOKONOMICS_WARMUP_KEYS
    if limit <= 0:
        return
    account_load = hooks_get().account_load

    def load() -> tuple[dict[str, KeyEntry], dict[int, AccountEntry]]:
        keys = keys_recent_load(limit)
        account_ids = list(dict.fromkeys(entry.account_id for entry in keys.values()))[:MAX_WARM_ACCOUNTS]
        accounts = {pk: account for pk in account_ids if (account := account_load(pk)) is not None}
        return keys, accounts

    loaded = await ctx.directory.preload(load)
    for account in ctx.directory.accounts_cached():
        await ctx.quota.seed_if_unseeded(account)  # after a Redis restart, or a budget change
    models = tuple(
        (endpoint.pricing_provider, endpoint.base_url, model)
        for account in ctx.directory.accounts_cached()
        for endpoint in account.endpoints.values()
        for model in endpoint.deployments.values()
    )
    if models:
        await asyncio.to_thread(_prices_warm, models)
    log.debug("warm-up preloaded %d directory entries", loaded)

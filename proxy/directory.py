"""What the proxy knows about keys, accounts and endpoints: an in-process cache filled off the
event loop, dropped whenever the configuration version in Redis moves (so a revoked key stops
working within one poll interval), and never older than MAX_AGE_SECONDS in any case."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from proxy.hooks import hooks_get
from proxy.models import ApiKey
from proxy.pricing import PriceTable

from .budgets import BudgetEntry
from .database_jobs import database_job
from .guardrail_policies import key_guardrails_load
from .response_cache import CacheSettings

if TYPE_CHECKING:
    from .guardrails.policy import CompiledPolicy

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 30.0
NEGATIVE_TTL_SECONDS = 2.0
# Loads overtaken by a configuration change are retried this often; the last answer then goes uncached.
MAX_LOAD_ATTEMPTS = 3
CONFIG_VERSION_KEY = "tk:cfgver"


@dataclass(slots=True, frozen=True)
class KeyEntry:
    id: int
    account_id: int
    name: str
    environment: str
    allowed_patterns: tuple[str, ...]
    expires_at: float | None  # unix seconds
    revoked: bool
    requests_per_minute: int
    tokens_per_minute: int
    max_concurrent: int
    # The key's effective guardrail policy (the account default merged with its own), compiled as the key
    # loads; None when neither exists, and the call pays one attribute check (proxy/guardrails/step.py).
    guardrails: CompiledPolicy | None = None

    def allows_model(self, model: str) -> bool:
        return not self.allowed_patterns or any(fnmatch.fnmatchcase(model, p) for p in self.allowed_patterns)

    def is_live(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > now)


@dataclass(slots=True, frozen=True)
class EndpointEntry:
    slug: str
    wire_format: str
    base_url: str
    pricing_provider: str
    credential: str
    deployments: dict[str, str] = field(default_factory=dict)  # deployment name → the model it serves


@dataclass(slots=True, frozen=True)
class RouteTarget:
    endpoint: str  # the slug of one of the account's endpoints
    model: str
    weight: int = 1
    timeout_seconds: float | None = None  # until the target's answer starts; None: the route's deadline

    @property
    def label(self) -> str:
        return f"{self.endpoint}/{self.model}"


@dataclass(slots=True, frozen=True)
class RouteEntry:
    """A model name clients call and the targets serving it (proxy/models.py Route; proxy/routing.py)."""

    name: str
    strategy: str
    targets: tuple[RouteTarget, ...]
    max_attempts: int = 3
    deadline_seconds: float = 60.0
    retries: int = 1
    backoff_seconds: float = 0.2
    cache_ttl_seconds: int | None = None  # the response cache's TTL for the route's calls; None: the account's
    cache_nonzero_temperature: bool | None = None  # cache its sampled calls; None: as the account says


@dataclass(slots=True)
class AccountEntry:
    id: int
    timezone: str
    monthly_request_limit: int
    on_redis_unavailable: str
    allow_unmetered_routes: bool
    endpoints: dict[str, EndpointEntry]
    budgets: tuple[BudgetEntry, ...]
    prices: dict[tuple[str, str], PriceTable]  # the account's overrides, by (endpoint slug, model)
    allow_unpriced_models: bool = False
    slug: str = ""  # named in traces (proxy/tracing.py)
    routes: dict[str, RouteEntry] = field(default_factory=dict)  # by the model name clients call
    cache: CacheSettings | None = None  # the response cache; None: off (the default)


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def load_key(key_hash: str) -> KeyEntry | None:
    """The key with this secret's hash: its current secret, or the one a rotation replaced, which lives only
    until the grace period the rotation chose (an expiry the gateway checks on every call, cache or not)."""
    key = ApiKey.objects.filter(Q(key_hash=key_hash) | Q(previous_key_hash=key_hash)).first()
    return None if key is None else _key_entry(key, key_hash)


def _key_entry(key: ApiKey, key_hash: str) -> KeyEntry | None:
    expires_at = key.expires_at
    if key.key_hash != key_hash:
        grace_end = key.previous_valid_until
        if grace_end is None:
            return None
        expires_at = grace_end if expires_at is None else min(expires_at, grace_end)
    return KeyEntry(
        id=key.pk,
        account_id=key.account_id,
        name=key.name,
        environment=key.environment,
        allowed_patterns=tuple(key.allowed_models or ()),
        expires_at=_timestamp(expires_at),
        revoked=key.revoked_at is not None,
        requests_per_minute=key.requests_per_minute or 0,
        tokens_per_minute=key.tokens_per_minute or 0,
        max_concurrent=key.max_concurrent or 0,
        guardrails=key_guardrails_load(account_id=key.account_id, key_id=key.pk),
    )


def keys_recent_load(limit: int) -> dict[str, KeyEntry]:
    """The `limit` newest live keys by their current secret's hash, for a new worker's warm-up (the keys
    record no last use: the newest are the likeliest to be in use)."""
    keys = ApiKey.objects.filter(revoked_at=None).order_by("-created_at", "-pk")[:limit]
    entries = {key.key_hash: _key_entry(key, key.key_hash) for key in keys}
    return {key_hash: entry for key_hash, entry in entries.items() if entry is not None}


# Keys or accounts cached per process; past this many (a flood of made-up keys) the cache starts over.
MAX_CACHED_ENTRIES = 100_000


class Directory:
    """Single-flight, version-checked cache of keys and accounts."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[float, Any]] = {}
        self._accounts: dict[int, tuple[float, Any]] = {}
        self._loading: dict[tuple[str, Any], asyncio.Future[Any]] = {}
        self.version: bytes | None = None
        self._epoch = 0  # moves on every clear: a load that spans one read what may since have changed

    def clear(self) -> None:
        self._epoch += 1
        self._keys.clear()
        self._accounts.clear()

    def observe_version(self, version: bytes | None) -> None:
        if version != self.version:
            self.version = version
            self.clear()

    async def preload(self, load: Callable[[], tuple[dict[str, KeyEntry], dict[int, AccountEntry]]]) -> int:
        """Fill the cache with what `load` reads off the event loop (a new worker's warm-up), unless the
        configuration moved meanwhile; never replaces an entry a call loaded. Returns the entries added."""
        epoch = self._epoch
        keys, accounts = await database_job(load)
        if epoch != self._epoch:
            return 0
        expires = time.monotonic() + MAX_AGE_SECONDS
        added = 0
        pairs: tuple[tuple[dict[Any, tuple[float, Any]], dict[Any, Any]], ...] = (
            (self._keys, keys), (self._accounts, accounts))
        for cache, entries in pairs:
            for ident, entry in list(entries.items())[:MAX_CACHED_ENTRIES - len(cache)]:
                if ident not in cache:
                    cache[ident] = (expires, entry)
                    added += 1
        return added

    def accounts_cached(self) -> list[AccountEntry]:
        return [entry for _, entry in self._accounts.values() if entry is not None]

    async def key(self, key_hash: str) -> KeyEntry | None:
        entry: KeyEntry | None = await self._get(self._keys, "key", key_hash, load_key)
        return entry

    async def account(self, account_id: int) -> AccountEntry | None:
        entry: AccountEntry | None = await self._get(self._accounts, "account", account_id, hooks_get().account_load)
        return entry

    async def _get(self, cache: dict[Any, tuple[float, Any]], kind: str, ident: Any, loader: Any) -> Any:
        now = time.monotonic()
        hit = cache.get(ident)
        if hit is not None and hit[0] > now:
            return hit[1]
        flight = self._loading.get((kind, ident))
        if flight is not None:
            return await asyncio.shield(flight)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[(kind, ident)] = future
        try:
            # A clear while the load ran (a config version moved: maybe a revocation) means the database may
            # have been read before the change: load again, so the old answer is never cached as fresh.
            for _ in range(MAX_LOAD_ATTEMPTS):
                epoch = self._epoch
                # Loads are rare (the cache holds them): database_job closes the thread's connection after.
                value = await database_job(lambda: loader(ident))
                if epoch == self._epoch:
                    ttl = MAX_AGE_SECONDS if value is not None else NEGATIVE_TTL_SECONDS
                    if len(cache) >= MAX_CACHED_ENTRIES:
                        cache.clear()  # random unknown keys must not grow it without end; live ones reload
                    cache[ident] = (time.monotonic() + ttl, value)
                    break
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._loading.pop((kind, ident), None)
        future.set_result(value)
        return value

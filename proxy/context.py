"""Process state of the proxy: one upstream client, one Redis client, the scripts and caches, the tracer.

Created once per worker process, at ASGI lifespan startup (uvicorn) or on first use (Daphne,
which sends no lifespan events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from pathlib import Path

import aiohttp
from django.conf import settings
from redis.exceptions import RedisError

from tokonomics.outbound_urls import PolicyResolver, private_urls_allowed

from . import metrics
from .database_jobs import database_job
from .directory import CONFIG_VERSION_KEY, Directory
from .hooks import CountersRebuild, hooks_get
from .leases import LeaseBook, lease_spool_drain
from .quota import CountersSeed, Quota
from .redis_cluster import proxy_redis
from .spool import PendingEvents, Spool, spool_drain
from .target_health import REFRESH_SECONDS, TargetHealth
from .tracing import Tracing, tracing_start

log = logging.getLogger(__name__)

SPOOL_DRAIN_SECONDS = 30.0


def _counters_seed_off_loop(rebuild: CountersRebuild) -> CountersSeed:
    async def seed(account_id: int, fingerprint: str) -> None:
        await database_job(lambda: rebuild(account_id=account_id, fingerprint=fingerprint))

    return seed


class ProxyContext:
    def __init__(self, *, counters_rebuild: CountersRebuild | None = None) -> None:
        """`counters_rebuild` defaults to the one billing installs (proxy/hooks.py)."""
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.TOKONOMICS_UPSTREAM_CONNECT_TIMEOUT,
            sock_read=settings.TOKONOMICS_UPSTREAM_READ_TIMEOUT,
        )
        # Private URLs allowed (the default) keeps aiohttp's own resolver: the check costs nothing then.
        self.private_urls_allowed = private_urls_allowed()
        resolver = None if self.private_urls_allowed else PolicyResolver()
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300,
                                         resolver=resolver)
        self.http = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,  # bytes pass through untouched; the client decompresses
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.redis = proxy_redis(settings.REDIS_URL, timeout=settings.TOKONOMICS_REDIS_TIMEOUT)
        # Usage events that could not reach Redis wait here, and in a spool file a killed process leaves behind.
        self.pending_events = PendingEvents(Spool(Path(settings.TOKONOMICS_SPOOL_DIR)))
        self.quota = Quota(
            self.redis, reservation_ttl_ms=int((settings.TOKONOMICS_UPSTREAM_READ_TIMEOUT + 60) * 1000),
            pending_events=self.pending_events,
            counters_seed=_counters_seed_off_loop(counters_rebuild or hooks_get().counters_rebuild),
            leases=LeaseBook(self.redis, fraction=settings.TOKONOMICS_LEASE_FRACTION,
                             ttl_seconds=settings.TOKONOMICS_LEASE_TTL_SECONDS,
                             flush_seconds=settings.TOKONOMICS_LEASE_FLUSH_SECONDS,
                             spool_dir=Path(settings.TOKONOMICS_SPOOL_DIR)),
        )
        self.directory = Directory()
        # A span per call when an OTLP endpoint is configured; None costs the calls nothing.
        self.tracing: Tracing | None = tracing_start()
        self._background: list[asyncio.Task[object]] = []
        # Route targets' breakers (shared through Redis) and latencies (proxy/target_health.py).
        self.target_health = TargetHealth(self.redis)
        self._side_tasks: set[asyncio.Future[object]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._poll_config_version()),
            loop.create_task(self._flush_pending_events()),
            loop.create_task(self._flush_metrics()),
            loop.create_task(self.warn_if_redis_may_evict()),
            loop.create_task(self._drain_spools()),
            loop.create_task(self._refresh_target_health()),
        ]
        if self.quota.leases is not None:
            self._background.append(loop.create_task(self.quota.leases.run()))

    async def close(self) -> None:
        if self.quota._replaying is not None:
            self._background.append(self.quota._replaying)
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        metrics.flush()
        if self.quota.leases is not None:
            # Leased calls settle, their events leave and the leases go back; what cannot reach Redis now
            # stays in the spool for another process to apply.
            await self.quota.leases.flush(final=True)
            self.quota.leases.segments.close()
        await self.quota.pending_flush()
        if self.pending_events:
            await self._write_pending_to_database()
        self.pending_events.spool.close(keep=bool(self.pending_events))
        await self.http.close()
        await self.redis.close()
        if self.tracing is not None:
            await self.tracing.close()  # the spans still queued are exported before the process goes

    async def _poll_config_version(self) -> None:
        while True:
            try:
                self.directory.observe_version(await self.redis.execute("GET", CONFIG_VERSION_KEY))
            except (RedisError, OSError):
                # Without the version we cannot see revocations: keep entries only briefly.
                self.directory.clear()
            await asyncio.sleep(settings.TOKONOMICS_CONFIG_POLL_SECONDS)

    def background(self, work: Awaitable[object]) -> None:
        """Run `work` without waiting for it (a call's side effect that must not delay the call); kept
        referenced until it ends."""
        task = asyncio.ensure_future(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _refresh_target_health(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            with contextlib.suppress(RedisError, OSError, TimeoutError):  # breakers stay as last seen
                await self.target_health.refresh()

    async def warn_if_redis_may_evict(self) -> str:
        """Budget counters, reservations and queued usage events live in Redis: a Redis that evicts keys
        when full would silently forget spend. Returns the policy ('' when Redis does not say)."""
        try:
            reply = await self.redis.execute("CONFIG", "GET", "maxmemory-policy")
        except (RedisError, OSError):
            return ""  # unreachable now, or CONFIG is disabled (managed Redis): nothing to tell
        if isinstance(reply, dict):  # redis-py's cluster client answers CONFIG GET as {name: value}
            reply = [item for pair in reply.items() for item in pair]
        policy = reply[1].decode() if len(reply) == 2 else ""
        if policy and policy != "noeviction":
            log.warning(
                "Redis runs with maxmemory-policy %s: when it fills up it may evict budget counters and queued "
                "usage events. Set maxmemory-policy noeviction for the Redis Tokonomics uses.", policy,
            )
        return policy

    async def _drain_spools(self) -> None:
        """What dead processes spooled (usage events during a Redis outage, leased settles not yet
        batched): at start-up, then now and then."""
        while True:
            try:
                await spool_drain(directory=Path(settings.TOKONOMICS_SPOOL_DIR), redis=self.redis)
                await lease_spool_drain(directory=Path(settings.TOKONOMICS_SPOOL_DIR), redis=self.redis)
            except OSError:
                log.exception("could not drain the usage spool directory")
            await asyncio.sleep(SPOOL_DRAIN_SECONDS)

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                metrics.flush()
            except Exception:
                log.exception("could not flush the metrics; trying again in a second")

    async def _flush_pending_events(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.quota.pending_flush()
            if len(self.pending_events) > 10_000:
                await self._write_pending_to_database()

    async def _write_pending_to_database(self) -> None:
        events = [event for _, event in self.pending_events]
        usage_events_write = hooks_get().usage_events_write
        try:
            await database_job(lambda: usage_events_write(events=events))
        except Exception:
            log.exception("could not write %d pending usage events to the database", len(events))
            return
        for _ in events:
            self.pending_events.popleft()


_context: ProxyContext | None = None
_context_lock = asyncio.Lock()


async def get_context() -> ProxyContext:
    global _context
    if _context is None:
        async with _context_lock:
            if _context is None:
                context = ProxyContext()
                context.start()
                _context = context
    return _context


async def close_context() -> None:
    global _context
    if _context is not None:
        context, _context = _context, None
        await context.close()

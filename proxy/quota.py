"""The only place that calls the budget scripts, with the counters proxy.budgets names for a call.

Money in Redis is integer nano-dollars: the same precision as a usage record's cost, so
counters rebuilt from records equal the live ones exactly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from django.db import DatabaseError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.periods import period_bounds
from tokonomics.redis_client import SyncRedis

from . import metrics
from .breaker import CircuitBreaker
from .budgets import (
    COUNTER_GRACE_SECONDS,
    BudgetEntry,
    BudgetLayout,
    BudgetPeriod,
    account_prefix,
    budget_layout_fingerprint,
    budget_value_token,
    per_value,
)
from .directory import AccountEntry, KeyEntry
from .leases import LeaseBook
from .redis_pipeline import Arg, LuaScript, ProxyRedis
from .usage_bounds import MAX_ESTIMATE_TOKENS

log = logging.getLogger(__name__)

LUA_DIR = Path(__file__).parent / "lua"
# Settles that could not reach Redis, kept to be replayed when it answers again; past this many the
# oldest are dropped (their reservations expire by themselves, and a rebuild recounts the spend).
MAX_DEFERRED_SETTLES = 100_000
# Replays that fail wait and try again, for about a minute; after that the next admitted call or
# deferred settle starts them again.
REPLAY_ATTEMPTS = 120
REPLAY_PAUSE_SECONDS = 0.5
# What a Redis that is down, slow or unreachable raises; a ResponseError (a RedisError too) is Redis
# answering, and is told apart where it matters.
REDIS_DOWN = (TimeoutError, RedisError, OSError)
# How many times a reserve that finds its counters unseeded seeds them and tries again: a layout that
# changes while seeding needs one more round.
SEED_ROUNDS = 3

# Cached call plans (one per account × key × feature × tenant seen); past this many the cache starts over.
MAX_CACHED_PLANS = 50_000

# What one call may reserve or settle, in nano-dollars ($1,000,000) and tokens. A request can ask for
# absurd output (n = 10^9, max_tokens = 10^18) and an upstream can report absurd usage; Redis counters are
# int64 and Lua numbers doubles (exact to 2^53, printed in exponent notation from 10^14 by tostring), so
# amounts are capped well inside both. A capped estimate is still far over any real call's: a hard budget
# denies it, a soft one counts it like any other.
MAX_CALL_NANOS = 10**15
MAX_CALL_TOKENS = MAX_ESTIMATE_TOKENS

# A call that would fit in room leased to proxy workers waits for them to give it back, trying again
# every BUSY_PAUSE_SECONDS, for at most BUSY_WAIT_SECONDS; then it is denied (room still leased out
# belongs to calls in flight).
BUSY_WAIT_SECONDS = 1.0
BUSY_PAUSE_SECONDS = 0.02

DENIAL_CODES = {
    "account": "account_budget",
    "tenant": "tenant_budget",
    "feature": "feature_budget",
    "key": "key_budget",
    "session": "session_budget",
}


def events_stream_key(account_id: int) -> str:
    return f"{account_prefix(account_id)}:events"


def seeded_marker_key(account_id: int) -> str:
    """A set of the budget layouts (fingerprints) whose counters were seeded from the usage records."""
    return f"{account_prefix(account_id)}:seeds"


def plan_counter_key(account_id: int, month_start: datetime) -> str:
    return f"{account_prefix(account_id)}:plan:{int(month_start.timestamp())}"


@dataclass(slots=True, frozen=True)
class Counter:
    key: str
    expire_at: int  # unix seconds; 0 = never (total budgets)
    scope: str
    limit_nanos: int
    hard: bool
    reset_at: int = 0  # unix seconds the period ends; 0 = never (total budgets)
    values_key: str = ""  # a '*' budget's: the value index its settles list `token` in
    token: str = ""  # "" unless values_key
    budget_id: int = 0
    downgrade_to: str = ""  # budget-aware downgrade (i16): served by this route or model…
    downgrade_at: int = 0  # …once the counter holds this many nano-dollars (0: never)


@dataclass(slots=True, frozen=True)
class CounterSeed:
    """A counter's settled spend as the usage records add it up, for counters_seed."""

    key: str
    nanos: int
    expire_at: int  # unix seconds; 0 = never (total budgets)
    values_key: str = ""  # a '*' budget's: its period's value index, which gets `token`
    token: str = ""


@dataclass(slots=True)
class Reservation:
    rid: str
    account_id: int
    key_id: int
    counters: list[Counter]
    estimate_nanos: int
    estimated_tokens: int
    held: bool = True  # False: admitted while Redis was unreachable, nothing reserved
    downgraded_by: Counter | None = None  # the counter whose downgrade threshold the call was admitted past
    leased: bool = False  # admitted against this worker's leases (proxy/leases.py): settles in its batch
    plan_lease: str = ""  # the plan request counter whose lease it used ("" = none)


@dataclass(slots=True, frozen=True)
class Denial:
    scope: str  # account_budget, tenant_budget, …, plan, rate_requests, rate_tokens, rate_concurrency
    retry_after_ms: int  # -1 when the cap never resets
    busy: bool = False  # the call would fit in room leased to proxy workers, who are asked to give it back


@dataclass(slots=True, frozen=True)
class CallPlan:
    """Everything the reserve script is sent for one kind of call (account, key, feature, tenant) but the
    call's own id and estimate, built once and reused until a budget period ends or the account or key
    changes (the directory then hands out new entries)."""

    account: AccountEntry
    key: KeyEntry
    counters: list[Counter]
    reserve_keys: list[str]
    reserve_args: list[str | int]  # after (rid, estimate_nanos, estimated_tokens)
    valid_from: float
    valid_until: float
    downgrades: tuple[int, ...] = ()  # indexes (in counters) of the counters with a downgrade threshold

    @property
    def caps_anything(self) -> bool:
        key = self.key
        return bool(self.counters or self.account.monthly_request_limit or key.requests_per_minute
                    or key.tokens_per_minute or key.max_concurrent)


class Unseeded(Exception):
    """Redis lacks this account's counters for its budget layout (lost, or the layout changed): they
    must be seeded from the usage records before hard budgets admit."""

    def __init__(self, account_id: int, fingerprint: str) -> None:
        super().__init__(account_id, fingerprint)
        self.account_id = account_id
        self.fingerprint = fingerprint


@dataclass(slots=True, frozen=True)
class _Period:
    start: datetime
    start_ts: float
    end_ts: float  # inf for `total`

    @property
    def reset_at(self) -> int:
        return 0 if self.end_ts == float("inf") else int(self.end_ts)

    @property
    def expire_at(self) -> int:
        return 0 if self.end_ts == float("inf") else int(self.end_ts) + COUNTER_GRACE_SECONDS


class _PeriodCache:
    """Period bounds per (period, time zone), recomputed only when `now` leaves the cached period."""

    def __init__(self) -> None:
        self._bounds: dict[tuple[str, str], _Period] = {}

    def get(self, period: str, timezone_name: str, now: float) -> _Period:
        hit = self._bounds.get((period, timezone_name))
        if hit is None or not hit.start_ts <= now < hit.end_ts:
            start, end = period_bounds(period, timezone_name, datetime.fromtimestamp(now, UTC))
            hit = _Period(start, start.timestamp(), end.timestamp() if end is not None else float("inf"))
            self._bounds[(period, timezone_name)] = hit
        return hit


# Seeds an account's counters for a budget layout (account id, fingerprint) from its usage records.
CountersSeed = Callable[[int, str], Awaitable[None]]


class Quota:
    """Budgets and rate limits in Redis, and what happens while Redis is down: the breaker, the settles
    to replay and the usage events kept for later all live here, so no caller handles a Redis error."""

    def __init__(
        self,
        redis: ProxyRedis,
        *,
        reservation_ttl_ms: int,
        pending_events: deque[tuple[int, bytes]] | None = None,
        counters_seed: CountersSeed | None = None,
        leases: LeaseBook | None = None,
    ) -> None:
        self.redis = redis
        # Budget leases: None or a fraction of 0 reserves every call in Redis (docs/performance.md).
        self.leases = leases if leases is not None and leases.enabled else None
        self.round_trips_before_upstream = 0  # reserve scripts a call waited for: the benchmark reports it
        self.reservation_ttl_ms = reservation_ttl_ms
        self._reserve = LuaScript.of((LUA_DIR / "reserve_call.lua").read_text())
        self._settle = LuaScript.of((LUA_DIR / "settle_call.lua").read_text())
        self._periods = _PeriodCache()
        self._fingerprints: dict[int, tuple[tuple[BudgetEntry, ...], str, str]] = {}
        self._layouts: dict[int, tuple[tuple[BudgetEntry, ...], BudgetLayout[BudgetEntry]]] = {}
        self._plans: dict[tuple[int, int, str, str, str], CallPlan] = {}
        self._settle_heads: dict[tuple[int, int], tuple[str, ...]] = {}
        self.breaker = CircuitBreaker()
        self.deferred: deque[tuple[Reservation, int, int]] = deque(maxlen=MAX_DEFERRED_SETTLES)
        # Usage events that could not reach Redis (the proxy context mirrors them in a spool file).
        self.pending_events: deque[tuple[int, bytes]] = pending_events if pending_events is not None else deque()
        self._replaying: asyncio.Task[None] | None = None
        self._counters_seed = counters_seed
        self._seeding: dict[int, asyncio.Future[None]] = {}  # one seed at a time per account, shared

    def scripts(self) -> tuple[LuaScript, ...]:
        """The scripts a call runs, for a new worker to load into Redis's cache before its first call."""
        return (self._reserve, self._settle)

    def plan_for(
        self, account: AccountEntry, key: KeyEntry, *, feature: str, tenant: str, now: float, session: str = ""
    ) -> CallPlan:
        # A session's plan differs from its key's only when some budget has the session scope.
        if session and not self.layout(account).has_scope("session"):
            session = ""
        slot = (account.id, key.id, feature, tenant, session)
        plan = self._plans.get(slot)
        if (plan is None or plan.account is not account or plan.key is not key
                or not plan.valid_from <= now < plan.valid_until):
            if len(self._plans) >= MAX_CACHED_PLANS:
                self._plans.clear()
            plan = self._plans[slot] = self._plan(account, key, feature=feature, tenant=tenant, session=session,
                                                  now=now)
        return plan

    def counters_for(
        self, account: AccountEntry, key: KeyEntry, *, feature: str, tenant: str, now: float, session: str = ""
    ) -> list[Counter]:
        return self.plan_for(account, key, feature=feature, tenant=tenant, session=session, now=now).counters

    def _plan(
        self, account: AccountEntry, key: KeyEntry, *, feature: str, tenant: str, session: str, now: float
    ) -> CallPlan:
        month = self._periods.get("month", account.timezone, now)
        valid_from, valid_until = month.start_ts, month.end_ts
        counters = []
        covered = self.layout(account).counters_for_call(key_id=key.id, key_name=key.name, feature=feature,
                                                         tenant=tenant, session=session)
        for budget, value in covered:
            period = self._periods.get(budget.period, account.timezone, now)
            valid_from, valid_until = max(valid_from, period.start_ts), min(valid_until, period.end_ts)
            counter_period = BudgetPeriod.of(account.id, budget.id, period.start)
            indexed = per_value(budget)
            counters.append(
                Counter(
                    counter_period.counter_key(value),
                    period.expire_at,
                    DENIAL_CODES[budget.scope],
                    budget.limit_nanos,
                    budget.hard,
                    period.reset_at,
                    counter_period.values_key if indexed else "",
                    budget_value_token(value) if indexed else "",
                    budget.id,
                    budget.downgrade_to,
                    budget.downgrade_at_nanos,
                )
            )
        prefix = account_prefix(account.id)
        key_prefix = f"{prefix}:k:{key.id}"
        # Soft counters are seeded too: alerts and dashboards read them, and a new key format or a lost Redis
        # would otherwise restart them at zero.
        fingerprint = self.fingerprint(account) if counters else ""
        args: list[str | int] = [
            self.reservation_ttl_ms,
            account.monthly_request_limit,
            month.reset_at,
            month.expire_at,
            key.requests_per_minute,
            key.tokens_per_minute,
            key.max_concurrent,
            fingerprint,
            len(counters),
        ]
        for c in counters:
            args += [c.limit_nanos, 1 if c.hard else 0, c.expire_at, c.reset_at, c.scope]
        keys = [
            f"{prefix}:rsv",
            f"{prefix}:rsvz",
            plan_counter_key(account.id, month.start),
            f"{key_prefix}:rpm",
            f"{key_prefix}:tpm",
            f"{key_prefix}:tpm:sum",
            f"{key_prefix}:inflight",
            seeded_marker_key(account.id),
            *(c.key for c in counters),
        ]
        downgrades = tuple(i for i, c in enumerate(counters) if c.downgrade_at)
        return CallPlan(account, key, counters, keys, args, valid_from, valid_until, downgrades)

    def layout(self, account: AccountEntry) -> BudgetLayout[BudgetEntry]:
        cached = self._layouts.get(account.id)
        if cached is not None and cached[0] is account.budgets:
            return cached[1]
        layout = BudgetLayout(account.budgets)
        self._layouts[account.id] = (account.budgets, layout)
        return layout

    def fingerprint(self, account: AccountEntry) -> str:
        cached = self._fingerprints.get(account.id)
        if cached is not None and cached[0] is account.budgets and cached[1] == account.timezone:
            return cached[2]
        value = budget_layout_fingerprint(account.timezone, account.budgets)
        self._fingerprints[account.id] = (account.budgets, account.timezone, value)
        return value

    async def reserve(
        self, *, rid: str, plan: CallPlan, estimate_nanos: int, estimated_tokens: int,
        downgrade_estimates: list[int] | None = None,
    ) -> Reservation | Denial:
        """`downgrade_estimates`: for each of plan.downgrades, what the call reserves when served by that
        counter's downgrade target (the script picks the first counter past its threshold)."""
        estimate_nanos = max(0, min(estimate_nanos, MAX_CALL_NANOS))
        estimated_tokens = max(0, min(estimated_tokens, MAX_CALL_TOKENS))
        args: list[Arg] = [rid, estimate_nanos, estimated_tokens, *plan.reserve_args]
        downgrade_nanos: dict[int, int] = {}  # counter index → the estimate reserved when it downgrades
        if downgrade_estimates is not None:
            args.append(len(plan.downgrades))
            for index, nanos in zip(plan.downgrades, downgrade_estimates, strict=True):
                downgrade_nanos[index] = max(0, min(nanos, MAX_CALL_NANOS))
                args += [index + 1, plan.counters[index].downgrade_at, downgrade_nanos[index]]
        reply = await self.redis.evalsha(self._reserve, plan.reserve_keys, args)
        verdict = reply[0]
        if verdict == b"ok":
            downgraded = int(reply[1]) if len(reply) > 1 else 0
            if downgraded:  # served by the counter's downgrade target: its estimate is what was reserved
                return Reservation(rid, plan.account.id, plan.key.id, plan.counters, downgrade_nanos[downgraded - 1],
                                   estimated_tokens, downgraded_by=plan.counters[downgraded - 1])
            return Reservation(rid, plan.account.id, plan.key.id, plan.counters, estimate_nanos, estimated_tokens)
        if verdict == b"unseeded":
            raise Unseeded(plan.account.id, self.fingerprint(plan.account))
        return Denial(reply[1].decode(), int(reply[2]), busy=verdict == b"busy")

    async def settle(
        self, *, reservation: Reservation, actual_nanos: int, actual_tokens: int, event: bytes, mode: str = ""
    ) -> list[int]:
        """Replace the reservation with the actual cost (see settle_call.lua for `mode`); `event`
        b"" queues no usage event."""
        if not reservation.held and not mode:
            mode = "once"
        prefix = account_prefix(reservation.account_id)
        counters = reservation.counters
        keys = [
            *self._settle_keys(reservation.account_id, reservation.key_id),
            f"{prefix}:settled:{reservation.rid}",
            *(c.key for c in counters),
            *(c.values_key for c in counters if c.values_key),
        ]
        argv: list[Arg] = [reservation.rid, max(0, min(actual_nanos, MAX_CALL_NANOS)),
                           max(0, min(actual_tokens, MAX_CALL_TOKENS)), event, mode, len(counters)]
        for c in counters:
            argv += [c.expire_at, c.token]
        settled: list[int] = await self.redis.evalsha(self._settle, keys, argv)
        return settled

    def _settle_keys(self, account_id: int, key_id: int) -> tuple[str, ...]:
        keys = self._settle_heads.get((account_id, key_id))
        if keys is None:
            if len(self._settle_heads) >= MAX_CACHED_PLANS:
                self._settle_heads.clear()
            prefix = account_prefix(account_id)
            key_prefix = f"{prefix}:k:{key_id}"
            keys = self._settle_heads[(account_id, key_id)] = (
                f"{prefix}:rsv", f"{prefix}:rsvz", f"{key_prefix}:tpm", f"{key_prefix}:tpm:sum",
                f"{key_prefix}:inflight", events_stream_key(account_id),
            )
        return keys

    async def admit(
        self, *, rid: str, plan: CallPlan, estimate_nanos: int, estimated_tokens: int,
        downgrade_estimates: list[int] | None = None,
    ) -> Reservation | Denial | None:
        """`reserve`, seeding the account's counters first if Redis lacks them; None when Redis gives no
        verdict (the breaker is open, Redis is down or refuses the script, the counters cannot be
        seeded), for the caller to apply the account's policy for an unavailable Redis."""
        leases = self.leases
        # A budget that may downgrade the call decides in the reserve script, from its counter's fill: such calls
        # take the round trip, never a lease.
        if leases is not None and not downgrade_estimates:
            plan_lease = leases.admit(plan=plan, estimate_nanos=estimate_nanos,
                                      fingerprint=self.fingerprint(plan.account) if plan.counters else "")
            if plan_lease is not None:
                metrics.add(metrics.lease_admissions_total.labels("lease"))
                return Reservation(rid, plan.account.id, plan.key.id, plan.counters, estimate_nanos, estimated_tokens,
                                   leased=True, plan_lease=plan_lease)
            metrics.add(metrics.lease_admissions_total.labels("redis"))
        verdict = await self._admit_in_redis(rid=rid, plan=plan, estimate_nanos=estimate_nanos,
                                             estimated_tokens=estimated_tokens, downgrade_estimates=downgrade_estimates)
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while isinstance(verdict, Denial) and verdict.busy:
            # The call would fit in room leased to proxy workers. Give back this worker's own at once; the
            # others give theirs back within two of their batches (Redis told them to): a call at a cap
            # waits that long rather than being denied while the room it needs sits unused in a lease.
            own_room = leases is not None and leases.holds_room(plan)
            if own_room and leases is not None:
                leases.surrender(plan.account.id)
                self.round_trips_before_upstream += 1
                own_room = not await leases.flush()
            if own_room or not (leases is not None and leases.holds_room(plan)):
                if time.monotonic() > deadline:
                    return replace(verdict, busy=False)
                await asyncio.sleep(BUSY_PAUSE_SECONDS)
            verdict = await self._admit_in_redis(rid=rid, plan=plan, estimate_nanos=estimate_nanos,
                                                 estimated_tokens=estimated_tokens,
                                                 downgrade_estimates=downgrade_estimates)
        return verdict

    async def _admit_in_redis(
        self, *, rid: str, plan: CallPlan, estimate_nanos: int, estimated_tokens: int,
        downgrade_estimates: list[int] | None = None,
    ) -> Reservation | Denial | None:
        if self.breaker.is_open:
            return None
        self.round_trips_before_upstream += 1
        try:
            verdict = await self._reserve_seeded(rid=rid, plan=plan, estimate_nanos=estimate_nanos,
                                                 estimated_tokens=estimated_tokens,
                                                 downgrade_estimates=downgrade_estimates)
        except ResponseError:
            # Redis answered but refused this call's script: not an outage, so the breaker stays closed for
            # every other account.
            log.exception("the reserve script failed for call %s", rid)
            return None
        except REDIS_DOWN as exc:
            self.breaker.trip()
            if isinstance(exc, TimeoutError | RedisTimeoutError):
                # The script may still run once Redis catches up: give back whatever it reserves then.
                stale = Reservation(rid, plan.account.id, plan.key.id, plan.counters, estimate_nanos, estimated_tokens)
                self.defer(reservation=stale, actual_nanos=0, actual_tokens=0)
            return None
        if verdict is None:
            return None
        self.breaker.reset()
        self.replay_deferred_soon()
        return verdict

    async def _reserve_seeded(
        self, *, rid: str, plan: CallPlan, estimate_nanos: int, estimated_tokens: int,
        downgrade_estimates: list[int] | None = None,
    ) -> Reservation | Denial | None:
        for _ in range(SEED_ROUNDS):
            try:
                return await self.reserve(rid=rid, plan=plan, estimate_nanos=estimate_nanos,
                                          estimated_tokens=estimated_tokens, downgrade_estimates=downgrade_estimates)
            except Unseeded as unseeded:
                if self._counters_seed is None:
                    log.error("account %s needs its budget counters seeded, and this proxy context cannot seed "
                              "them (no counters_seed)", unseeded.account_id)
                    return None
                try:
                    await self._seed(unseeded.account_id, unseeded.fingerprint)
                except (*REDIS_DOWN, DatabaseError):
                    log.exception("could not seed the budget counters of account %s", unseeded.account_id)
                    return None
        return None

    async def seed_if_unseeded(self, account: AccountEntry) -> bool:
        """Seed the account's budget counters now unless Redis has them (a new worker's warm-up prepays what the
        account's first call would wait for). True when they were seeded here."""
        if not account.budgets or self._counters_seed is None:
            return False
        fingerprint = self.fingerprint(account)
        if await self.redis.execute("SISMEMBER", seeded_marker_key(account.id), fingerprint):
            return False
        await self._seed(account.id, fingerprint)
        return True

    async def _seed(self, account_id: int, fingerprint: str) -> None:
        """Seed once for every call that finds the account's counters unseeded meanwhile."""
        assert self._counters_seed is not None
        flight = self._seeding.get(account_id)
        if flight is None:
            flight = self._seeding[account_id] = asyncio.ensure_future(self._counters_seed(account_id, fingerprint))
            flight.add_done_callback(lambda _: self._seeding.pop(account_id, None))
        await asyncio.shield(flight)

    async def settle_or_defer(
        self, *, reservation: Reservation, actual_nanos: int, actual_tokens: int, event: bytes
    ) -> None:
        """`settle`, or, when Redis cannot take it, keep the settle to replay and the usage event to send
        once Redis answers again: an outage loses neither."""
        if reservation.leased and self.leases is not None:
            self.leases.settle(reservation=reservation, actual_nanos=max(0, min(actual_nanos, MAX_CALL_NANOS)),
                               event=event)
            return
        if not self.breaker.is_open:
            try:
                await self.settle(reservation=reservation, actual_nanos=actual_nanos, actual_tokens=actual_tokens,
                                  event=event)
                return
            except ResponseError:
                log.exception("the settle script failed for %s; deferred", reservation.rid)  # not an outage
            except REDIS_DOWN:
                self.breaker.trip()
        self.defer(reservation=reservation, actual_nanos=actual_nanos, actual_tokens=actual_tokens)
        if event:
            self.pending_events.append((reservation.account_id, event))

    def defer(self, *, reservation: Reservation, actual_nanos: int, actual_tokens: int) -> None:
        """Keep a settle that could not reach Redis, to replay in the background once it answers again."""
        self.deferred.append((reservation, actual_nanos, actual_tokens))
        self.replay_deferred_soon()

    def replay_deferred_soon(self) -> None:
        """Start replaying deferred settles in the background, unless that is already under way."""
        if self.deferred and (self._replaying is None or self._replaying.done()):
            self._replaying = asyncio.get_running_loop().create_task(self._replay_deferred())

    async def _replay_deferred(self) -> None:
        failures = 0
        while self.deferred and failures < REPLAY_ATTEMPTS:
            reservation, actual_nanos, actual_tokens = self.deferred[0]
            try:
                await self.settle(
                    reservation=reservation, actual_nanos=actual_nanos, actual_tokens=actual_tokens, event=b"",
                    mode="replay" if reservation.held else "once",
                )
            except ResponseError:
                log.exception("dropping a deferred settle Redis refuses: %s", reservation.rid)
            except REDIS_DOWN:
                failures += 1
                await asyncio.sleep(REPLAY_PAUSE_SECONDS)
                continue
            self.deferred.popleft()

    async def record(self, *, account_id: int, event: bytes) -> None:
        """Queue the usage event of a call that reserved nothing (a denial, a bad request); kept for later
        while Redis is down."""
        if not self.breaker.is_open:
            try:
                await self.redis.execute("XADD", events_stream_key(account_id), "*", "e", event)
                return
            except REDIS_DOWN:
                self.breaker.trip()
        self.pending_events.append((account_id, event))

    async def pending_flush(self) -> None:
        """Send the usage events kept while Redis was down, oldest first, until one fails."""
        while self.pending_events:
            account_id, event = self.pending_events[0]
            try:
                await self.redis.execute("XADD", events_stream_key(account_id), "*", "e", event)
            except (RedisError, OSError):
                return
            self.pending_events.popleft()

def counters_seed(
    client: SyncRedis,
    *,
    account_id: int,
    counters: Iterable[CounterSeed],
    fingerprints: Iterable[str],
    plan: tuple[datetime, int, int] | None = None,
) -> dict[str, int]:
    """Raise counters to at least the given settled spend (listing a '*' budget's values in its index), and
    the plan counter ((month start, requests, expiry)) likewise, then mark the budget layouts `fingerprints`
    seeded; atomic. Returns {key: settled value afterwards}."""
    counters = list(counters)
    script = client.register_script((LUA_DIR / "seed_counters.lua").read_text())
    month_start, requests, plan_expiry = plan if plan is not None else (datetime.fromtimestamp(0, UTC), 0, 0)
    keys = [seeded_marker_key(account_id), plan_counter_key(account_id, month_start),
            *(c.key for c in counters), *(c.values_key for c in counters if c.values_key)]
    argv: list[str | int] = [",".join(fingerprints), "" if plan is None else requests, plan_expiry, len(counters)]
    for c in counters:
        argv += [c.nanos, c.expire_at, c.token if c.values_key else ""]
    settled = script(keys=keys, args=argv)
    return dict(zip((c.key for c in counters), (int(v) for v in settled), strict=True))


@dataclass(slots=True, frozen=True)
class ValueSpend:
    value: str  # as the client sent it (a hashed one as its token); a key's id for a key budget
    key: str  # its counter
    settled: int  # nano-dollars
    reserved: int  # calls in flight and leases (proxy/leases.py) alike
    leased: int = 0  # of `reserved`: room leased to proxy workers, not spent yet


def budget_values_list(
    client: SyncRedis, *, period: BudgetPeriod, limit: int, min_nanos: int | None = None,
    max_nanos: int | None = None,
) -> list[ValueSpend]:
    """A '*' budget's counters in one period, biggest spenders first: at most `limit` of them, from its value
    index (never a scan: a period may hold millions of values), only those whose settled spend lies in
    [min_nanos, max_nanos] when given."""
    if limit <= 0:
        return []
    low = "-inf" if min_nanos is None else min_nanos
    high = "+inf" if max_nanos is None else max_nanos
    # Members as bytes: the client does not decode responses.
    members = cast(list[bytes], client.zrevrangebyscore(period.values_key, high, low, start=0, num=limit))
    keys = [period.token_key(t.decode()) for t in members]
    pipe = client.pipeline(transaction=False)  # one round trip for all of them
    for key in keys:
        pipe.hmget(key, "s", "r", "l")
    found = [ValueSpend(period.value_of(key), key, int(settled or 0), int(reserved or 0), int(leased or 0))
             for key, (settled, reserved, leased) in zip(keys, pipe.execute(), strict=True)]
    # The index's scores are doubles, exact below 2^53 nano-dollars ($9M); the counters themselves decide.
    found = [f for f in found if (min_nanos is None or f.settled >= min_nanos)
             and (max_nanos is None or f.settled <= max_nanos)]
    return sorted(found, key=lambda f: -f.settled)

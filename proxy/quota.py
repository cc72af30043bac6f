"""The only place that builds Redis keys and calls the budget scripts.

Money in Redis is integer nano-dollars: the same precision as a usage record's cost, so
counters rebuilt from records equal the live ones exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

import redis
from redis.exceptions import RedisError, ResponseError

from proxy.periods import period_bounds

from .directory import AccountEntry, BudgetEntry, KeyEntry
from .redis_pipeline import LuaScript, PipelinedRedis
from .usage_bounds import MAX_TOKENS

log = logging.getLogger(__name__)

NANOS_PER_USD = 1_000_000_000
LUA_DIR = Path(__file__).parent / "lua"
# Counters outlive their period by a day so alerts and dashboards can still read them.
COUNTER_GRACE_SECONDS = 86400
# Settles that could not reach Redis, kept to be replayed when it answers again; past this many the
# oldest are dropped (their reservations expire by themselves, and a rebuild recounts the spend).
MAX_DEFERRED_SETTLES = 100_000
# Replays that fail wait and try again, for about a minute; after that the next admitted call or
# deferred settle starts them again.
REPLAY_ATTEMPTS = 120
REPLAY_PAUSE_SECONDS = 0.5

# The format of budget counter keys. It is part of every budget layout fingerprint, so counters kept under
# another format (2: tenant / feature values encoded) are re-seeded from the records, never read as empty.
BUDGET_KEY_FORMAT = 2
# A value whose encoding is longer than this is kept under a hash of it: keys stay short, and an alert's
# dedupe key (counter key and a suffix) fits its 300-character column.
MAX_VALUE_TOKEN = 160

# Cached call plans (one per account × key × feature × tenant seen); past this many the cache starts over.
MAX_CACHED_PLANS = 50_000

# What one call may reserve or settle, in nano-dollars ($1,000,000) and tokens. A request can ask for
# absurd output (n = 10^9, max_tokens = 10^18) and an upstream can report absurd usage; Redis counters are
# int64 and Lua numbers doubles (exact to 2^53, printed in exponent notation from 10^14 by tostring), so
# amounts are capped well inside both. A capped estimate is still far over any real call's: a hard budget
# denies it, a soft one counts it like any other.
MAX_CALL_NANOS = 10**15
MAX_CALL_TOKENS = MAX_TOKENS  # the same bound the usage record keeps

DENIAL_CODES = {
    "account": "account_budget",
    "tenant": "tenant_budget",
    "feature": "feature_budget",
    "key": "key_budget",
}


def usd_to_nanos(amount: Decimal) -> int:
    return int(amount.scaleb(9).to_integral_value())


def account_prefix(account_id: int) -> str:
    # The hash tag keeps every key of an account in one cluster slot, so one script can touch them all.
    return f"tk:{{a:{account_id}}}"


def events_stream_key(account_id: int) -> str:
    return f"{account_prefix(account_id)}:events"


def seeded_marker_key(account_id: int) -> str:
    """A set of the budget layouts (fingerprints) whose counters were seeded from the usage records."""
    return f"{account_prefix(account_id)}:seeds"


def plan_counter_key(account_id: int, month_start: datetime) -> str:
    return f"{account_prefix(account_id)}:plan:{int(month_start.timestamp())}"


def budget_value_token(value: str) -> str:
    """A tenant, feature or key value as its counter key holds it: strictly percent-encoded (only letters,
    digits and `-._~` stay, so `team-a` reads as itself in Redis and the dashboard can show it), or, when
    that is longer than MAX_VALUE_TOKEN, `#` and a hash of the value. No byte a client sends can be a key
    separator, a hash tag or a Lua delimiter, and `#` never starts an encoded value."""
    raw = value.encode("utf-8", "surrogatepass")
    token = quote_from_bytes(raw, safe="")
    if len(token) <= MAX_VALUE_TOKEN:
        return token
    return "#" + hashlib.blake2b(raw, digest_size=16).hexdigest()


def budget_value_of(token: str) -> str:
    """The value a counter key's last part stands for (a hashed one is shown as its token)."""
    return token if token.startswith("#") else unquote_to_bytes(token).decode("utf-8", "replace")


def budget_counter_key(account_id: int, budget_id: int, period_start: datetime, value: str = "") -> str:
    suffix = f":{budget_value_token(value)}" if value else ""
    return f"{account_prefix(account_id)}:b{BUDGET_KEY_FORMAT}:{budget_id}:{int(period_start.timestamp())}{suffix}"


def alert_claim_base(counter_key: str) -> str:
    """A counter's key as alert claims (dedupe keys) name it: in the first key format's words (`:b:`), so
    a threshold that fired before the counters moved to another key format does not fire again after."""
    return counter_key.replace(f":b{BUDGET_KEY_FORMAT}:", ":b:", 1)


def budget_layout_fingerprint(timezone_name: str, budgets: Iterable[tuple[int, str, str, str]]) -> str:
    """Which counters an account's budgets (id, scope, match, period) keep, in its time zone, under
    BUDGET_KEY_FORMAT.

    Limits and hard/soft are left out: changing them keeps every counter. Anything else may start
    counters that must first be seeded with the period's recorded spend.
    """
    layout = repr((BUDGET_KEY_FORMAT, timezone_name, sorted(budgets)))
    return hashlib.blake2b(layout.encode(), digest_size=8).hexdigest()


@dataclass(slots=True, frozen=True)
class Counter:
    key: str
    expire_at: int  # unix seconds; 0 = never (total budgets)
    scope: str
    limit_nanos: int
    hard: bool
    reset_at: int = 0  # unix seconds the period ends; 0 = never (total budgets)


@dataclass(slots=True)
class Reservation:
    rid: str
    account_id: int
    key_id: int
    counters: list[Counter]
    estimate_nanos: int
    estimated_tokens: int
    held: bool = True  # False: admitted while Redis was unreachable, nothing reserved


@dataclass(slots=True, frozen=True)
class Denial:
    scope: str  # account_budget, tenant_budget, …, plan, rate_requests, rate_tokens, rate_concurrency
    retry_after_ms: int  # -1 when the cap never resets


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


def applicable_budgets(
    account: AccountEntry, key: KeyEntry, *, feature: str, tenant: str
) -> list[tuple[BudgetEntry, str]]:
    """Every budget covering this call, with the value its counter is kept for ('' = one counter).

    A budget naming a value wins over a '*' budget of the same scope and period for that value.
    """
    values = {"tenant": tenant, "feature": feature, "key": key.name}
    chosen: dict[tuple[str, str], tuple[BudgetEntry, str]] = {}
    for budget in account.budgets:
        if budget.scope == "account":
            chosen[("account", budget.period + str(budget.id))] = (budget, "")
            continue
        value = values[budget.scope]
        if not value:
            continue  # a call without the header is in no tenant or feature budget
        slot = (budget.scope, budget.period)
        if budget.match == value and value != "*":  # a tenant called "*" is a value, not the wildcard
            chosen[slot] = (budget, "")
        elif budget.match == "*" and slot not in chosen:
            chosen[slot] = (budget, str(key.id) if budget.scope == "key" else value)
    return list(chosen.values())


class Quota:
    def __init__(self, redis: PipelinedRedis, *, reservation_ttl_ms: int) -> None:
        self.redis = redis
        self.reservation_ttl_ms = reservation_ttl_ms
        self._reserve = LuaScript.of((LUA_DIR / "reserve_call.lua").read_text())
        self._settle = LuaScript.of((LUA_DIR / "settle_call.lua").read_text())
        self._periods = _PeriodCache()
        self._fingerprints: dict[int, tuple[tuple[BudgetEntry, ...], str, str]] = {}
        self._plans: dict[tuple[int, int, str, str], CallPlan] = {}
        self._settle_heads: dict[tuple[int, int], tuple[str, ...]] = {}
        self.deferred: deque[tuple[Reservation, int, int]] = deque(maxlen=MAX_DEFERRED_SETTLES)
        self._replaying: asyncio.Task[None] | None = None

    def plan_for(self, account: AccountEntry, key: KeyEntry, *, feature: str, tenant: str, now: float) -> CallPlan:
        slot = (account.id, key.id, feature, tenant)
        plan = self._plans.get(slot)
        if (plan is None or plan.account is not account or plan.key is not key
                or not plan.valid_from <= now < plan.valid_until):
            if len(self._plans) >= MAX_CACHED_PLANS:
                self._plans.clear()
            plan = self._plans[slot] = self._plan(account, key, feature=feature, tenant=tenant, now=now)
        return plan

    def counters_for(
        self, account: AccountEntry, key: KeyEntry, *, feature: str, tenant: str, now: float
    ) -> list[Counter]:
        return self.plan_for(account, key, feature=feature, tenant=tenant, now=now).counters

    def _plan(self, account: AccountEntry, key: KeyEntry, *, feature: str, tenant: str, now: float) -> CallPlan:
        month = self._periods.get("month", account.timezone, now)
        valid_from, valid_until = month.start_ts, month.end_ts
        counters = []
        for budget, value in applicable_budgets(account, key, feature=feature, tenant=tenant):
            period = self._periods.get(budget.period, account.timezone, now)
            valid_from, valid_until = max(valid_from, period.start_ts), min(valid_until, period.end_ts)
            counters.append(
                Counter(
                    budget_counter_key(account.id, budget.id, period.start, value),
                    period.expire_at,
                    DENIAL_CODES[budget.scope],
                    budget.limit_nanos,
                    budget.hard,
                    period.reset_at,
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
        return CallPlan(account, key, counters, keys, args, valid_from, valid_until)

    def fingerprint(self, account: AccountEntry) -> str:
        cached = self._fingerprints.get(account.id)
        if cached is not None and cached[0] is account.budgets and cached[1] == account.timezone:
            return cached[2]
        layout = ((b.id, b.scope, b.match, b.period) for b in account.budgets)
        value = budget_layout_fingerprint(account.timezone, layout)
        self._fingerprints[account.id] = (account.budgets, account.timezone, value)
        return value

    async def reserve(
        self, *, rid: str, plan: CallPlan, estimate_nanos: int, estimated_tokens: int
    ) -> Reservation | Denial:
        estimate_nanos = max(0, min(estimate_nanos, MAX_CALL_NANOS))
        estimated_tokens = max(0, min(estimated_tokens, MAX_CALL_TOKENS))
        reply = await self.redis.evalsha(self._reserve, plan.reserve_keys,
                                         [rid, estimate_nanos, estimated_tokens, *plan.reserve_args])
        verdict = reply[0]
        if verdict == b"ok":
            return Reservation(rid, plan.account.id, plan.key.id, plan.counters, estimate_nanos, estimated_tokens)
        if verdict == b"unseeded":
            raise Unseeded(plan.account.id, self.fingerprint(plan.account))
        return Denial(reply[1].decode(), int(reply[2]))

    async def settle(
        self, *, reservation: Reservation, actual_nanos: int, actual_tokens: int, event: bytes, mode: str = ""
    ) -> list[int]:
        """Replace the reservation with the actual cost (see settle_call.lua for `mode`); `event`
        b"" queues no usage event."""
        if not reservation.held and not mode:
            mode = "once"
        prefix = account_prefix(reservation.account_id)
        keys = [
            *self._settle_keys(reservation.account_id, reservation.key_id),
            f"{prefix}:settled:{reservation.rid}",
            *(c.key for c in reservation.counters),
        ]
        argv: list[str | int | bytes] = [reservation.rid, max(0, min(actual_nanos, MAX_CALL_NANOS)),
                                         max(0, min(actual_tokens, MAX_CALL_TOKENS)), event, mode]
        argv += [c.expire_at for c in reservation.counters]
        return await self.redis.evalsha(self._settle, keys, argv)

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

    async def release(self, *, reservation: Reservation) -> None:
        """Give a reservation back unused (the call never got an answer); its usage event goes on its own."""
        await self.settle(reservation=reservation, actual_nanos=0, actual_tokens=0, event=b"")

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
            except (TimeoutError, RedisError, OSError):
                failures += 1
                await asyncio.sleep(REPLAY_PAUSE_SECONDS)
                continue
            self.deferred.popleft()

    async def record_only(self, *, account_id: int, event: bytes) -> None:
        """Queue the usage event of a call that reserved nothing (a denial, a bad request)."""
        await self.redis.execute("XADD", events_stream_key(account_id), "*", "e", event)


def counters_seed(
    client: redis.Redis,
    *,
    account_id: int,
    counters: dict[str, tuple[int, int]],
    fingerprints: Iterable[str],
    plan: tuple[datetime, int, int] | None = None,
) -> dict[str, int]:
    """Raise counters ({key: (settled nano-dollars, expiry)}) to at least the given values, and the
    plan counter ((month start, requests, expiry)) likewise, then mark the budget layouts `fingerprints`
    seeded; atomic. Returns {key: settled value afterwards}."""
    script = client.register_script((LUA_DIR / "seed_counters.lua").read_text())
    month_start, requests, plan_expiry = plan if plan is not None else (datetime.fromtimestamp(0, UTC), 0, 0)
    keys = [seeded_marker_key(account_id), plan_counter_key(account_id, month_start), *counters]
    argv: list[str | int] = [",".join(fingerprints), "" if plan is None else requests, plan_expiry]
    for nanos, expire_at in counters.values():
        argv += [nanos, expire_at]
    settled = script(keys=keys, args=argv)
    return dict(zip(counters, (int(v) for v in settled), strict=True))

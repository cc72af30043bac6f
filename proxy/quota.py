"""The only place that builds Redis keys and calls the budget scripts.

Money in Redis is integer nano-dollars: the same precision as a usage record's cost, so
counters rebuilt from records equal the live ones exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from redis.asyncio import Redis

from billing.periods import period_bounds

from .directory import AccountEntry, BudgetEntry, KeyEntry

NANOS_PER_USD = 1_000_000_000
LUA_DIR = Path(__file__).parent / "lua"

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
    return f"{account_prefix(account_id)}:seeded"


def budget_counter_key(account_id: int, budget_id: int, period_start: datetime, value: str = "") -> str:
    suffix = f":{value}" if value else ""
    return f"{account_prefix(account_id)}:b:{budget_id}:{int(period_start.timestamp())}{suffix}"


@dataclass(slots=True, frozen=True)
class Counter:
    key: str
    expire_at: int  # unix seconds; 0 = never (total budgets)
    scope: str
    limit_nanos: int
    hard: bool


@dataclass(slots=True)
class Reservation:
    rid: str
    account_id: int
    key_id: int
    counters: list[Counter]
    estimate_nanos: int
    estimated_tokens: int


@dataclass(slots=True, frozen=True)
class Denial:
    scope: str  # account_budget, tenant_budget, …, plan, rate_requests, rate_tokens, rate_concurrency
    retry_after_ms: int  # -1 when the cap never resets


class Unseeded(Exception):
    """Redis has lost this account's counters; they must be rebuilt before hard budgets admit."""


class _PeriodCache:
    """Period bounds per (period, time zone), recomputed only when the period rolls over."""

    def __init__(self) -> None:
        self._bounds: dict[tuple[str, str], tuple[datetime, datetime | None, float]] = {}

    def get(self, period: str, timezone_name: str, now: float) -> tuple[datetime, int]:
        hit = self._bounds.get((period, timezone_name))
        if hit is None or hit[2] <= now:
            start, end = period_bounds(period, timezone_name, datetime.fromtimestamp(now, UTC))
            end_ts = end.timestamp() if end is not None else float("inf")
            hit = (start, end, end_ts)
            self._bounds[(period, timezone_name)] = hit
        start, end, end_ts = hit
        # Counters outlive their period by a day so alerts and dashboards can still read them.
        return start, 0 if end is None else int(end_ts) + 86400


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
        if budget.match == value:
            chosen[slot] = (budget, "")
        elif budget.match == "*" and slot not in chosen:
            chosen[slot] = (budget, str(key.id) if budget.scope == "key" else value)
    return list(chosen.values())


class Quota:
    def __init__(self, redis: Redis, *, reservation_ttl_ms: int) -> None:
        self.redis = redis
        self.reservation_ttl_ms = reservation_ttl_ms
        self._reserve = redis.register_script((LUA_DIR / "reserve_call.lua").read_text())
        self._settle = redis.register_script((LUA_DIR / "settle_call.lua").read_text())
        self._periods = _PeriodCache()

    def counters_for(
        self, account: AccountEntry, key: KeyEntry, *, feature: str, tenant: str, now: float
    ) -> list[Counter]:
        counters = []
        for budget, value in applicable_budgets(account, key, feature=feature, tenant=tenant):
            start, expire_at = self._periods.get(budget.period, account.timezone, now)
            counters.append(
                Counter(
                    budget_counter_key(account.id, budget.id, start, value),
                    expire_at,
                    DENIAL_CODES[budget.scope],
                    budget.limit_nanos,
                    budget.hard,
                )
            )
        return counters

    async def reserve(
        self,
        *,
        rid: str,
        account: AccountEntry,
        key: KeyEntry,
        counters: list[Counter],
        estimate_nanos: int,
        estimated_tokens: int,
        now: float,
    ) -> Reservation | Denial:
        prefix = account_prefix(account.id)
        key_prefix = f"{prefix}:k:{key.id}"
        month_start, month_expiry = self._periods.get("month", account.timezone, now)
        needs_seed = account.has_hard_budgets and any(c.hard for c in counters)
        argv: list[str | int] = [
            rid,
            estimate_nanos,
            estimated_tokens,
            self.reservation_ttl_ms,
            account.monthly_request_limit,
            month_expiry,
            key.requests_per_minute,
            key.tokens_per_minute,
            key.max_concurrent,
            seeded_marker_key(account.id) if needs_seed else "",
            len(counters),
        ]
        for c in counters:
            argv += [c.limit_nanos, 1 if c.hard else 0, c.expire_at, c.scope]
        keys = [
            f"{prefix}:rsv",
            f"{prefix}:rsvz",
            f"{prefix}:plan:{int(month_start.timestamp())}",
            f"{key_prefix}:rpm",
            f"{key_prefix}:tpm",
            f"{key_prefix}:tpm:sum",
            f"{key_prefix}:inflight",
            *(c.key for c in counters),
        ]
        reply = await self._reserve(keys=keys, args=argv)
        verdict = reply[0]
        if verdict == b"ok":
            return Reservation(rid, account.id, key.id, counters, estimate_nanos, estimated_tokens)
        if verdict == b"unseeded":
            raise Unseeded(account.id)
        return Denial(reply[1].decode(), int(reply[2]))

    async def settle(
        self, *, reservation: Reservation, actual_nanos: int, actual_tokens: int, event: bytes
    ) -> list[int]:
        prefix = account_prefix(reservation.account_id)
        key_prefix = f"{prefix}:k:{reservation.key_id}"
        keys = [
            f"{prefix}:rsv",
            f"{prefix}:rsvz",
            f"{key_prefix}:tpm",
            f"{key_prefix}:tpm:sum",
            f"{key_prefix}:inflight",
            events_stream_key(reservation.account_id),
            *(c.key for c in reservation.counters),
        ]
        argv: list[str | int | bytes] = [reservation.rid, actual_nanos, actual_tokens, event]
        argv += [c.expire_at for c in reservation.counters]
        return await self._settle(keys=keys, args=argv)

    async def record_only(self, *, account_id: int, event: bytes) -> None:
        """Queue the usage event of a call that reserved nothing (a denial, a bad request)."""
        await self.redis.xadd(events_stream_key(account_id), {"e": event})

"""The budget model, in one place: which counters a call lands in, what those counters are called in
Redis, which values a '*' budget keeps counters for, and how dollars become the integer nano-dollars the
counters hold. Enforcement (quota), the rebuild from usage records (billing.counters), alerts and the
dashboard all ask this module; none of them restates a rule. Pure: no I/O.

The rule (CONTRACT §2): an account budget covers every call, with one counter. A tenant, feature or key
budget naming a value covers the calls naming that value (a key by its name), with one counter. A '*'
budget covers every call naming a value in its scope, with one counter per value (a key by its id), except
the values a budget of the same scope and period names: those are counted there. A call without the
header is in no tenant or feature budget.

A session (X-Tokonomics-Session: one agent run) is a scope like tenant: `session` / '*' caps each run. Its
period is the budget's own; `total` is the run's whole life (a run id is not reused), and is what the
budget form suggests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Generic, Protocol, TypeVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

WILDCARD = "*"

# The format of budget counter keys. It is part of every budget layout fingerprint, so counters kept under
# another format (2: tenant / feature values encoded) are re-seeded from the records, never read as empty.
BUDGET_KEY_FORMAT = 2
# The format of the per-period value indexes of '*' budgets (1: a ZSET of value tokens scored by settled
# spend). Part of the fingerprint too: counters kept before there was an index are re-seeded, which fills it.
VALUE_INDEX_FORMAT = 1
# A value whose encoding is longer than this is kept under a hash of it: keys stay short, and an alert's
# dedupe key (counter key and a suffix) fits its 300-character column.
MAX_VALUE_TOKEN = 160
# Counters (and their value indexes) outlive their period by a day so alerts and dashboards can still read them.
COUNTER_GRACE_SECONDS = 86400


def usd_to_nanos(amount: Decimal) -> int:
    """Dollars as the integer nano-dollars Redis counters hold (exact for the 9 places a cost is stored with)."""
    return int(amount.scaleb(9).to_integral_value())


def nanos_to_usd(nanos: int) -> Decimal:
    """Nano-dollars as dollars, exactly."""
    return Decimal(nanos).scaleb(-9)


def account_prefix(account_id: int) -> str:
    # The hash tag keeps every key of an account in one cluster slot, so one script can touch them all.
    return f"tk:{{a:{account_id}}}"


def ingested_key(account_id: int) -> str:
    """A number that moves whenever new usage of the account is stored: open dashboards poll it."""
    return f"{account_prefix(account_id)}:ingested"


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


@dataclass(frozen=True, slots=True)
class BudgetPeriod:
    """One budget's counters for one period: `base` is the counter of a budget with one counter; a '*'
    budget keeps one counter per value under `base:token`, and lists those tokens in `values_key`."""

    account_id: int
    budget_id: int
    start_ts: int  # unix seconds the period starts

    @classmethod
    def of(cls, account_id: int, budget_id: int, period_start: datetime) -> BudgetPeriod:
        return cls(account_id, budget_id, int(period_start.timestamp()))

    @property
    def base(self) -> str:
        return f"{account_prefix(self.account_id)}:b{BUDGET_KEY_FORMAT}:{self.budget_id}:{self.start_ts}"

    @property
    def values_key(self) -> str:
        # Not under `base`: a value token may be any word, so nothing else may share the counters' key space.
        return f"{account_prefix(self.account_id)}:vals{VALUE_INDEX_FORMAT}:{self.budget_id}:{self.start_ts}"

    def counter_key(self, value: str = "") -> str:
        return self.token_key(budget_value_token(value)) if value else self.base

    def token_key(self, token: str) -> str:
        return f"{self.base}:{token}"

    def value_of(self, counter_key: str) -> str:
        """The value a counter key of this period is kept for ('' for `base`)."""
        if counter_key == self.base:
            return ""
        if not counter_key.startswith(self.base + ":"):
            raise ValueError(f"{counter_key!r} is not a counter of {self.base!r}")
        return budget_value_of(counter_key[len(self.base) + 1:])

    @property
    def claim_base(self) -> str:
        return alert_claim_base(self.base)

    def claimed_key(self, claim: str, *, parts: int) -> str:
        """The counter key named by alert_claim(counter key, *parts) of a counter of this period, `parts`
        being how many parts the claim ends with (the claim's shape decides, not the budget's match today)."""
        if not claim.startswith(self.claim_base + ":"):
            raise ValueError(f"{claim!r} is not a claim of {self.base!r}")
        # A token never holds ':' (percent-encoded, or '#' and hex), so what precedes the parts is all of it.
        named = claim[len(self.claim_base) + 1:].split(":")[:-parts]
        if len(named) > 1:
            raise ValueError(f"{claim!r} does not end with {parts} parts")
        return self.token_key(named[0]) if named else self.base


def budget_counter_key(account_id: int, budget_id: int, period_start: datetime, value: str = "") -> str:
    return BudgetPeriod.of(account_id, budget_id, period_start).counter_key(value)


def alert_claim_base(counter_key: str) -> str:
    """A counter's key as alert claims (dedupe keys) name it: in the first key format's words (`:b:`), so
    a threshold that fired before the counters moved to another key format does not fire again after."""
    return counter_key.replace(f":b{BUDGET_KEY_FORMAT}:", ":b:", 1)


def alert_claim(counter_key: str, *parts: str) -> str:
    """The dedupe key of an alert about one counter: its claim base and `parts` (which hold no token)."""
    return ":".join((alert_claim_base(counter_key), *parts))


class BudgetRow(Protocol):
    """What the layout needs of a budget: a directory BudgetEntry and a billing Budget row both have it."""

    @property
    def id(self) -> int: ...
    @property
    def scope(self) -> str: ...
    @property
    def match(self) -> str: ...
    @property
    def period(self) -> str: ...


class PricedBudgetRow(BudgetRow, Protocol):
    @property
    def limit_usd(self) -> Decimal: ...
    @property
    def hard(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class BudgetEntry:
    id: int
    scope: str
    match: str
    period: str
    limit_nanos: int
    hard: bool
    downgrade_to: str = ""  # budget-aware downgrade: the route or model calls are served by past downgrade_at
    downgrade_at_nanos: int = 0  # 0: no downgrade

    @classmethod
    def of(cls, row: PricedBudgetRow) -> BudgetEntry:
        limit = usd_to_nanos(row.limit_usd)
        # A billing Budget row has the downgrade fields; other rows (tests, tools) need not.
        downgrade_to = str(getattr(row, "downgrade_to", "") or "")
        if getattr(row, "on_exceed", "deny") == "downgrade" and downgrade_to:
            at = max(1, limit * int(getattr(row, "downgrade_at", 90)) // 100)
            return cls(row.id, row.scope, row.match, row.period, limit, row.hard, downgrade_to, at)
        return cls(row.id, row.scope, row.match, row.period, limit, row.hard)


def budget_layout_fingerprint(timezone_name: str, budgets: Iterable[BudgetRow]) -> str:
    """Which counters an account's budgets keep, in its time zone, under BUDGET_KEY_FORMAT and
    VALUE_INDEX_FORMAT.

    Limits and hard/soft are left out: changing them keeps every counter. Anything else may start
    counters that must first be seeded with the period's recorded spend.
    """
    rows = sorted((b.id, b.scope, b.match, b.period) for b in budgets)
    layout = repr(((BUDGET_KEY_FORMAT, VALUE_INDEX_FORMAT), timezone_name, rows))
    return hashlib.blake2b(layout.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Named:
    """What a call names in one scope: `name` is what a budget's match is compared with, `value` what a
    '*' budget keeps its counter for (the same, but a key's id for its name)."""

    name: str
    value: str


R = TypeVar("R", bound=BudgetRow)


class BudgetLayout(Generic[R]):
    """An account's budgets, and for each call (or each value a scope names) the counters it lands in."""

    __slots__ = ("budgets", "_named", "_scopes")

    def __init__(self, budgets: Iterable[R]) -> None:
        self.budgets: tuple[R, ...] = tuple(budgets)
        self._named = frozenset((b.scope, b.period, b.match) for b in self.budgets if not per_value(b))
        self._scopes = frozenset(b.scope for b in self.budgets)

    def has_scope(self, scope: str) -> bool:
        return scope in self._scopes

    def counter_value(self, budget: R, named: Named) -> str | None:
        """The value of `budget`'s counter a call naming `named` in the budget's scope lands in ('' = the
        budget's one counter), or None when the budget does not cover it."""
        if budget.scope == "account":
            return ""
        if not named.name:
            return None  # a call without the header is in no tenant or feature budget
        if not per_value(budget):
            return "" if named.name == budget.match else None
        # A value some budget of the same scope and period names is counted there, not under '*'; a tenant
        # called '*' is a value ('*' is never a named budget's match).
        return None if (budget.scope, budget.period, named.name) in self._named else named.value

    def counters_for_call(
        self, *, key_id: int, key_name: str, feature: str, tenant: str, session: str = ""
    ) -> list[tuple[R, str]]:
        """Every budget covering a call, with the value its counter is kept for ('' = one counter)."""
        names = {"tenant": Named(tenant, tenant), "feature": Named(feature, feature),
                 "key": Named(key_name, str(key_id)), "account": Named("", ""), "session": Named(session, session)}
        covered = []
        for budget in self.budgets:
            value = self.counter_value(budget, names[budget.scope])
            if value is not None:
                covered.append((budget, value))
        return covered

    def values_for(self, budget: R, named: Iterable[Named]) -> dict[str, list[Named]]:
        """{counter value: the names landing in it} of one budget, for the names a scope's calls hold (a
        rebuild's groups of records, an ingested batch's tenants)."""
        out: dict[str, list[Named]] = {}
        for one in named:
            value = self.counter_value(budget, one)
            if value is not None:
                out.setdefault(value, []).append(one)
        return out


def per_value(budget: BudgetRow) -> bool:
    """Whether a budget keeps one counter per value ('*'), listed in its period's value index."""
    return budget.scope != "account" and budget.match == WILDCARD

"""Budget leases: room a proxy worker holds on a budget counter, reserved in Redis, so that a call the
room covers is admitted without waiting for Redis; and the batch that settles those calls.

A lease is reserved room like a call's reservation (the counter's `r`), so a hard cap counts it and
CONTRACT §2's guarantee holds as before. A call is admitted locally only when every hard counter it
touches (and the plan's request counter) has leased room for its estimate; otherwise it goes through
reserve_call.lua as without leases. Every TOKONOMICS_LEASE_FLUSH_SECONDS one script per account
(flush_leases.lua, all of them in one pipelined write) moves what the leased calls spent from
reserved to settled, appends their usage events, gives back room beyond about one second of this
worker's spend and asks for more up to it. flush_leases.lua caps what a worker may hold at
TOKONOMICS_LEASE_FRACTION of the remaining room shared among the workers serving the account, and
refuses a lease smaller than MIN_LEASE_CALLS calls: near a cap leases shrink to nothing and every
call goes through Redis. A lease not renewed within its TTL (a dead worker) is swept by the scripts.

Calls settled against a lease are written to a spool segment (one file per batch, locked while this
process lives) before they count anywhere else; a segment is deleted once its batch is applied. A
`kill -9` leaves segments that any proxy process applies later (`lease_spool_drain`); a batch carries
the worker's sequence number, so one applied before is never applied twice.

Keys with rate limits (requests or tokens per minute, concurrency) are never leased: see
docs/performance.md for why.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import metrics
from .budgets import account_prefix, nanos_to_usd
from .redis_pipeline import Arg, LuaScript, ProxyRedis

if TYPE_CHECKING:
    from .quota import CallPlan, Counter, Reservation

log = logging.getLogger(__name__)

LUA = Path(__file__).parent / "lua" / "flush_leases.lua"
SUFFIX = ".lease"
# A lease is sized to about this much of the worker's recent spend on its counter.
RATE_WINDOW_SECONDS = 1.0
# Less room than this many of the counter's recent estimates is not worth holding.
MIN_LEASE_CALLS = 8
# Kinds of leased counters (flush_leases.lua): a hard budget (leased), a soft one (spend only
# counted), the plan's monthly request counter (leased in requests).
HARD, SOFT, PLAN = "h", "s", "p"
RELEASE_ALL = 10**18
# How long a worker believes the cap Redis last gave it: after that it asks again (the room may have grown:
# a raised limit, a new period, a call that waited for leased room has gone).
CAP_SECONDS = 1.0
ARGS_PER_COUNTER = 10


def lease_hash_key(account_id: int) -> str:
    return f"{account_prefix(account_id)}:lease"


def lease_deadlines_key(account_id: int) -> str:
    return f"{account_prefix(account_id)}:leasez"


def lease_workers_key(account_id: int) -> str:
    return f"{account_prefix(account_id)}:leasew"


def lease_batch_marker_key(account_id: int, worker: str) -> str:
    return f"{account_prefix(account_id)}:leaseb:{worker}"


@dataclass(slots=True)
class Lease:
    """One counter as this worker sees it: what its lease holds in Redis and what local calls use of it."""

    key: str
    kind: str
    limit: int  # nano-dollars, or requests for PLAN
    expire_at: int
    values_key: str
    token: str
    scope: str  # a metric label: account_budget, …, plan
    held: int = 0  # what the lease record in Redis holds (as of the last batch, less what that batch gives back)
    inflight: int = 0  # estimates of calls admitted against the lease, not settled yet
    unflushed: int = 0  # spent by settled calls, not yet in a batch
    cap: int = -1  # the free room Redis last said one worker may hold (-1: not known)
    cap_at: float = 0.0  # when (monotonic): a cap is only believed for CAP_SECONDS
    frozen: bool = False  # its limit was lowered: local calls may not use it until a batch gives it back
    thawing: bool = False  # the batch in flight gives all its free room back
    window_start: float = 0.0
    window_sum: int = 0  # estimates admitted (either path) since window_start
    last_window: int = 0
    largest: int = 0  # largest estimate in the current and last windows

    @property
    def room(self) -> int:
        return self.held - self.inflight - self.unflushed

    def note(self, amount: int, now: float) -> None:
        self._roll(now)
        self.window_sum += amount
        self.largest = max(self.largest, amount)

    def rate(self, now: float) -> int:
        """About one second of this worker's spend on the counter."""
        self._roll(now)
        return max(self.last_window, self.window_sum)

    def _roll(self, now: float) -> None:
        if now - self.window_start >= RATE_WINDOW_SECONDS:
            recent = now - self.window_start < 2 * RATE_WINDOW_SECONDS
            self.last_window = self.window_sum if recent else 0
            if not recent:
                self.largest = 0
            self.window_start, self.window_sum = now, 0


@dataclass(slots=True)
class AccountLeases:
    account_id: int
    leases: dict[str, Lease] = field(default_factory=dict)
    events: list[bytes] = field(default_factory=list)
    fingerprint: str = ""  # the budget layout the last batch found seeded
    wanted_fingerprint: str = ""  # the layout the account's calls have now (Quota.fingerprint)
    valid_until: float = 0.0  # monotonic: local admission stops unless a batch renews the leases by then
    surrender: bool = False  # give back all free room on the next batch (a call was denied meanwhile)


@dataclass(slots=True)
class _AccountBatch:
    account_id: int
    leases: list[Lease]
    keys: list[str]
    args: list[Arg]
    fingerprint: str


@dataclass(slots=True)
class _Batch:
    seq: int
    accounts: list[_AccountBatch]
    segment: Path | None
    sent_at: float = 0.0


class _Segments:
    """The spool of settled-but-unbatched calls: one file per batch, locked by this process while it lives
    (proxy/spool.py's reasoning holds: no fsync). The lines of one event-loop iteration leave in one
    O_APPEND write at its end, as the Redis commands of that iteration do (redis_pipeline.py): under
    load a write per call cost more than the round trips leases save."""

    def __init__(self, directory: Path, worker: str) -> None:
        self.directory = directory
        self.worker = worker
        self.seq = 1
        self.fd: int | None = None
        self.path: Path | None = None
        self.broken = False
        self.held: dict[Path, int] = {}  # segments handed to batches not yet applied -> fd
        self.pending: list[bytes] = []

    def write(self, line: bytes) -> None:
        if not self.pending:
            try:
                asyncio.get_running_loop().call_soon(self.drain)
            except RuntimeError:  # no loop (a script, a test): written at once
                self.pending.append(line)
                self.drain()
                return
        self.pending.append(line)

    def drain(self) -> None:
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        if self.fd is None:
            if self.broken:
                return
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self.directory / f"{self.worker}-{self.seq:012d}{SUFFIX}"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                log.exception("cannot make a lease spool segment in %s: leased settles are kept in memory only",
                              self.directory)
                self.broken = True
                return
            self.fd, self.path = fd, path
        try:
            os.write(self.fd, data)
        except OSError:
            log.exception("could not spool leased settles (they are still batched in memory)")

    def rotate(self) -> tuple[int, Path | None]:
        """The sequence number of the batch being built, and its segment; the next lines go to a new one."""
        self.drain()  # the lines of the calls in this batch belong in its segment
        seq, path = self.seq, self.path
        if path is not None and self.fd is not None:
            self.held[path] = self.fd
        self.seq += 1
        self.fd = self.path = None
        return seq, path

    def release(self, path: Path | None) -> None:
        if path is None:
            return
        fd = self.held.pop(path, None)
        path.unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Unlocked files stay for a drainer: only applied segments were deleted."""
        self.drain()
        for fd in self.held.values():
            os.close(fd)
        self.held.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def worker_id() -> str:
    # No '|': it separates the worker from the counter key in a lease record's field.
    return f"{socket.gethostname()[:40].replace('|', '_')}-{os.getpid()}-{secrets.token_hex(4)}"


class LeaseBook:
    """This worker's leases, the calls admitted against them, and the batches that settle them."""

    def __init__(self, redis: ProxyRedis, *, fraction: float, ttl_seconds: float, flush_seconds: float,
                 spool_dir: Path) -> None:
        self.redis = redis
        self.fraction = min(max(fraction, 0.0), 1.0)
        self.ttl_ms = max(1000, int(ttl_seconds * 1000))
        self.flush_seconds = flush_seconds
        self.worker = worker_id()
        self.script = LuaScript.of(LUA.read_text())
        self.accounts: dict[int, AccountLeases] = {}
        self.segments = _Segments(spool_dir, self.worker)
        self.failed: list[_Batch] = []  # sent, no answer: sent again, first, until applied
        self._lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._scopes: set[str] = set()
        self.admitted_locally = 0  # for the benchmark and /metrics
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.fraction > 0

    # --- the call's side: no await, no Redis -------------------------------------------------------

    def _lease(self, state: AccountLeases, counter: Counter) -> Lease:
        lease = state.leases.get(counter.key)
        if lease is None:
            lease = state.leases[counter.key] = Lease(
                counter.key, HARD if counter.hard else SOFT, counter.limit_nanos, counter.expire_at,
                counter.values_key, counter.token, counter.scope,
            )
        elif counter.limit_nanos != lease.limit:
            if counter.limit_nanos < lease.limit:
                lease.frozen = True  # granted under a higher limit: no local call uses it until given back
            lease.limit = counter.limit_nanos
        return lease

    def _plan_lease(self, state: AccountLeases, plan: CallPlan) -> Lease:
        key = plan.reserve_keys[2]
        lease = state.leases.get(key)
        if lease is None:
            expire_at = plan.reserve_args[3]
            assert isinstance(expire_at, int)
            lease = state.leases[key] = Lease(key, PLAN, plan.account.monthly_request_limit, expire_at, "", "",
                                              "plan")
        elif plan.account.monthly_request_limit != lease.limit:
            if plan.account.monthly_request_limit < lease.limit:
                lease.frozen = True
            lease.limit = plan.account.monthly_request_limit
        return lease

    def admit(self, *, plan: CallPlan, estimate_nanos: int, fingerprint: str) -> str | None:
        """Take the call's estimate from this worker's leases: returns the plan request counter whose lease
        it used ("" = none), or None when the leases do not cover it (it must reserve in Redis)."""
        key = plan.key
        if key.requests_per_minute or key.tokens_per_minute or key.max_concurrent:
            return None  # rate limits stay on the round trip (docs/performance.md)
        account = plan.account
        state = self.accounts.get(account.id)
        if state is None:
            state = self.accounts[account.id] = AccountLeases(account.id)
        now = time.monotonic()
        hard = [self._lease(state, c) for c in plan.counters if c.hard]
        plan_lease = self._plan_lease(state, plan) if account.monthly_request_limit else None
        state.wanted_fingerprint = fingerprint
        for lease in hard:
            lease.note(estimate_nanos, now)
        if plan_lease is not None:
            plan_lease.note(1, now)
        if (state.valid_until <= now or state.fingerprint != fingerprint
                or any(lease.frozen or lease.room < estimate_nanos for lease in hard)
                or (plan_lease is not None and (plan_lease.frozen or plan_lease.room < 1))):
            self.misses += 1
            self.wake()
            return None
        for lease in hard:
            lease.inflight += estimate_nanos
        if plan_lease is not None:
            plan_lease.inflight += 1
        self.admitted_locally += 1
        return plan_lease.key if plan_lease is not None else ""

    def holds_room(self, plan: CallPlan) -> bool:
        """Whether this worker holds free room on a counter of the call (worth giving back before a denial)."""
        state = self.accounts.get(plan.account.id)
        if state is None:
            return False
        return any(lease.room > 0 and lease.kind != SOFT for lease in state.leases.values())

    def settle(self, *, reservation: Reservation, actual_nanos: int, event: bytes) -> None:
        """The call's cost counts against its leases now, and reaches Redis with the next batch."""
        state = self.accounts.get(reservation.account_id)
        if state is None:  # cannot happen: admission made it; kept total for safety
            state = self.accounts[reservation.account_id] = AccountLeases(reservation.account_id)
        spooled: list[list[Any]] = []
        for counter in reservation.counters:
            lease = self._lease(state, counter)
            if lease.kind == HARD:
                lease.inflight -= reservation.estimate_nanos
            lease.unflushed += actual_nanos
            spooled.append([lease.key, lease.kind, actual_nanos, lease.expire_at, lease.values_key, lease.token,
                            lease.limit, lease.scope])
        if reservation.plan_lease:
            lease = state.leases[reservation.plan_lease]
            lease.inflight -= 1
            lease.unflushed += 1
            spooled.append([lease.key, PLAN, 1, lease.expire_at, "", "", lease.limit, "plan"])
        if event:
            state.events.append(event)
        self.segments.write(orjson.dumps({"a": reservation.account_id, "c": spooled, "e": event.decode()}) + b"\n")

    def surrender(self, account_id: int) -> None:
        state = self.accounts.get(account_id)
        if state is not None:
            state.surrender = True

    # --- the batch ------------------------------------------------------------------------------

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Flush every flush_seconds, or sooner when a call misses its lease (its counters want room)."""
        self._wake = asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("a lease batch failed; it is sent again")
            await asyncio.sleep(self.flush_seconds / 4)  # a burst of misses wakes it at most this often

    async def flush(self, *, final: bool = False) -> bool:
        """Send the batches not yet applied, then a new one; True when everything reached Redis."""
        async with self._lock:
            while self.failed:
                if not await self._send(self.failed[0]):
                    return False
                self.failed.pop(0)
            batch = self._build(final=final)
            if batch is None:
                return True
            # Kept until applied: a batch cut short (Redis down, or this task cancelled at shutdown) goes
            # again before any later one, which Redis would otherwise apply first and so skip this one.
            self.failed.append(batch)
            if not await self._send(batch):
                return False
            self.failed.remove(batch)
            return True

    def _build(self, *, final: bool) -> _Batch | None:
        now = time.monotonic()
        accounts = []
        for state in list(self.accounts.values()):
            built = self._build_account(state, now, final=final)
            if built is not None:
                accounts.append(built)
            elif not state.leases and not state.events:
                del self.accounts[state.account_id]
        if not accounts:
            return None
        seq, segment = self.segments.rotate()
        return _Batch(seq, accounts, segment)

    def _build_account(self, state: AccountLeases, now: float, *, final: bool) -> _AccountBatch | None:
        leases: list[Lease] = []
        keys: list[str] = []
        index_keys: list[str] = []
        args: list[Arg] = []
        for lease in list(state.leases.values()):
            spent = lease.unflushed
            release = want = min_grant = 0
            if lease.frozen and lease.held <= 0:
                lease.frozen = False  # it holds nothing granted under the old limit
            if lease.kind != SOFT:
                free = lease.room  # what leaves with this batch leaves `held` and `unflushed` alike
                target = 0 if final or state.surrender or lease.frozen else lease.rate(now)
                lease.thawing = lease.frozen
                if lease.cap >= 0 and now - lease.cap_at < CAP_SECONDS:
                    target = min(target, lease.cap)
                worth = MIN_LEASE_CALLS * (lease.largest if lease.kind == HARD else 1)
                if target < worth or target <= 0:
                    release = max(0, free)  # not worth holding (idle, or near the cap): all of it goes back
                elif free > 2 * target:
                    release = free - target
                elif free < target:
                    want = target - free
                    min_grant = max(0, worth - free)
            if not (spent or release or want or lease.held):
                if lease.inflight == 0 and lease.window_sum == 0 and lease.last_window == 0:
                    del state.leases[lease.key]  # idle: forgotten
                continue
            # What this batch takes out of the lease is gone for local calls now, before Redis answers:
            # Redis takes it out whatever the local calls do meanwhile.
            if lease.kind == PLAN:
                used = min(spent, lease.held)
                lease.held -= used + min(release, lease.held - used)
            elif lease.kind == HARD:
                lease.held -= min(spent + release, lease.held)
            lease.unflushed -= spent
            leases.append(lease)
            keys.append(lease.key)
            if lease.values_key:
                index_keys.append(lease.values_key)
            args += [lease.kind, lease.held, spent, release, want, min_grant, lease.limit, lease.expire_at,
                     lease.token, 0]
        state.surrender = False
        if not leases and not state.events:
            return None
        events, state.events = state.events, []
        account_id = state.account_id
        all_keys = [lease_hash_key(account_id), lease_deadlines_key(account_id), lease_workers_key(account_id),
                    f"{account_prefix(account_id)}:events", lease_batch_marker_key(account_id, self.worker),
                    f"{account_prefix(account_id)}:seeds", *keys, *index_keys]
        # ARGV[5], the batch's sequence number, is set when the batch is sent (_send).
        head: list[Arg] = [self.worker, self.ttl_ms, repr(self.fraction), state.wanted_fingerprint, 0]
        return _AccountBatch(account_id, leases, all_keys, [*head, len(leases), len(events), *args, *events],
                             state.wanted_fingerprint)

    async def _send(self, batch: _Batch) -> bool:
        sent_at = time.monotonic()
        for account in batch.accounts:
            account.args[4] = batch.seq
        try:
            replies = await asyncio.gather(*(self.redis.evalsha(self.script, a.keys, a.args)
                                             for a in batch.accounts))
        except Exception as exc:  # Redis down or slow: the same batch goes again; local admission lapses
            log.warning("could not send a lease batch (%s); it is sent again", exc)
            return False
        for account, reply in zip(batch.accounts, replies, strict=True):
            self._apply(account, reply, sent_at)
        self.segments.release(batch.segment)
        self._observe()
        return True

    def _apply(self, account: _AccountBatch, reply: list[Any], sent_at: float) -> None:
        state = self.accounts.get(account.account_id)
        if reply[0] == b"dup":
            for lease, held in zip(account.leases, reply[1], strict=True):
                lease.held = int(held)
            return
        seeded = reply[1] == 1
        for lease, (_, after, _, cap) in zip(account.leases, reply[2], strict=True):
            lease.held = int(after)
            # Unseeded, Redis computed no cap: it is not known (the next batch asks again).
            lease.cap, lease.cap_at = (int(cap) if seeded else -1), sent_at
            if lease.thawing:
                lease.frozen = lease.thawing = False
        if state is not None:
            if seeded:
                state.fingerprint = account.fingerprint
                # Local admission may go on for half the TTL after this batch left: Redis keeps the room
                # for the whole TTL from when it ran, which is later.
                state.valid_until = sent_at + self.ttl_ms / 2000
            else:
                state.valid_until = 0.0

    def _observe(self) -> None:
        room: dict[str, float] = {}
        for state in self.accounts.values():
            for lease in state.leases.values():
                if lease.kind == SOFT:
                    continue
                free = max(0, lease.room)
                room[lease.scope] = room.get(lease.scope, 0.0) + (free if lease.kind == PLAN
                                                                  else float(nanos_to_usd(free)))
        self._scopes |= room.keys()
        for scope in self._scopes:
            gauge = metrics.lease_room_requests if scope == "plan" else metrics.lease_room_usd.labels(scope)
            gauge.set(room.get(scope, 0.0))

    def rows(self) -> Iterator[Lease]:
        for state in self.accounts.values():
            yield from state.leases.values()


def _segment_batches(worker: str, content: bytes) -> list[tuple[int, list[str], list[Arg]]]:
    """A dead worker's segment as flush_leases.lua calls, one per account: (account id, keys, args without
    the sequence number), every lease given back whole."""
    accounts: dict[int, tuple[dict[str, list[Any]], list[bytes]]] = {}
    for line in content.split(b"\n"):
        if not line:
            continue
        try:
            item = orjson.loads(line)
            account_id = int(item["a"])
            rows = item["c"]
            event = str(item["e"]).encode()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.error("skipping an unreadable line of a lease spool segment")
            continue
        counters, events = accounts.setdefault(account_id, ({}, []))
        for key, kind, spent, expire_at, values_key, token, limit, _scope in rows:
            row = counters.setdefault(key, [kind, 0, expire_at, values_key, token, limit])
            row[1] += int(spent)
        if event:
            events.append(event)
    batches = []
    for account_id, (counters, events) in accounts.items():
        args: list[Arg] = []
        index_keys = []
        for kind, spent, expire_at, values_key, token, limit in counters.values():
            release = 0 if kind == SOFT else RELEASE_ALL
            args += [kind, 0, spent, release, 0, 0, limit, expire_at, token, 0]
            if values_key:
                index_keys.append(values_key)
        keys = [lease_hash_key(account_id), lease_deadlines_key(account_id), lease_workers_key(account_id),
                f"{account_prefix(account_id)}:events", lease_batch_marker_key(account_id, worker),
                f"{account_prefix(account_id)}:seeds", *counters, *index_keys]
        batches.append((account_id, keys, [worker, 1000, "0", "", len(counters), len(events), *args, *events]))
    return batches


async def lease_spool_drain(*, directory: Path, redis: ProxyRedis) -> int:
    """Apply the lease batches dead workers spooled and never sent (or sent without deleting them: those
    are skipped by their sequence number), oldest first, then delete their segments. Returns the
    segments applied."""
    from .spool import orphans, release

    script = LuaScript.of(LUA.read_text())
    found = await asyncio.to_thread(orphans, directory, SUFFIX)
    applied = 0
    # A worker's batches must reach Redis in order: its segments' names end in their sequence numbers.
    for fd, path, content in sorted(found, key=lambda f: f[1].name):
        done = False
        try:
            worker, _, seq = path.name.removesuffix(SUFFIX).rpartition("-")
            if not seq.isdigit() or not worker or "|" in worker:
                log.error("skipping lease spool segment %s: not a segment's name", path)
                continue
            for _account_id, keys, args in _segment_batches(worker, content):
                # ARGV[5], the sequence number, goes after the first four.
                await redis.evalsha(script, keys, [*args[:4], int(seq), *args[4:]])
            done = True
            applied += 1
            log.warning("applied lease batch %s of a stopped worker", path.name)
        except (OSError, TimeoutError) as exc:
            log.warning("could not apply lease spool segment %s (%s); it stays for the next drain", path, exc)
        except Exception:
            log.exception("could not apply lease spool segment %s; it stays for the next drain", path)
        finally:
            await asyncio.to_thread(release, fd, path if done else None)
    return applied

"""Budget leases (proxy/leases.py) against the real scripts in Redis: leased room is reserved room, so
CONTRACT §2's hard-cap guarantee holds whatever the workers, calls, estimates and actuals; a dead
worker's room comes back; a killed worker's spooled settles are applied once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from proxy import metrics
from proxy import quota as quota_module
from proxy.directory import AccountEntry, BudgetEntry
from proxy.leases import LeaseBook, lease_hash_key, lease_spool_drain
from proxy.quota import Denial, Quota, Reservation, events_stream_key, plan_counter_key, seeded_marker_key
from proxy.redis_pipeline import PipelinedRedis

from ..support import account_entry, key_entry

KEY_ID = 9
accounts = itertools.count(910_000)


@dataclass
class World:
    """Workers (each a Quota with its own LeaseBook) sharing one Redis, and what the test knows they did."""

    account: AccountEntry
    workers: list[Quota]
    redis: Redis
    pipeline: PipelinedRedis
    inflight: list[tuple[int, Reservation]] = field(default_factory=list)
    overshoot: int = 0  # actual beyond estimate, summed over settled calls: what §2 allows past the cap
    settled: int = 0
    settled_calls: int = 0
    admitted: int = 0
    leased: int = 0

    def plan(self, worker: int) -> quota_module.CallPlan:
        key = key_entry(KEY_ID, account_id=self.account.id)
        return self.workers[worker].plan_for(self.account, key, feature="", tenant="", now=time.time())

    async def call(self, worker: int, estimate: int) -> bool:
        verdict = await self.workers[worker].admit(rid=f"r{next(accounts)}", plan=self.plan(worker),
                                                   estimate_nanos=estimate, estimated_tokens=1)
        assert verdict is not None  # Redis is up
        if isinstance(verdict, Denial):
            assert verdict.scope in ("account_budget", "plan")
            return False
        self.inflight.append((worker, verdict))
        self.admitted += 1
        self.leased += verdict.leased
        return True

    async def settle(self, index: int, ratio: float) -> None:
        worker, reservation = self.inflight.pop(index % len(self.inflight))
        actual = int(reservation.estimate_nanos * ratio)
        self.overshoot += max(0, actual - reservation.estimate_nanos)
        self.settled += actual
        self.settled_calls += 1
        await self.workers[worker].settle_or_defer(reservation=reservation, actual_nanos=actual, actual_tokens=1,
                                                   event=b'{"e":1}')

    def hard_counter(self) -> str:
        return self.plan(0).counters[0].key

    async def check(self) -> None:
        """Everything admitted and not given back fits under the cap, but for estimate error; Redis's books
        agree with the lease records and reservations."""
        key = self.hard_counter()
        limit = self.account.budgets[0].limit_nanos
        fields = {k.decode(): int(v) for k, v in (await self.redis.hgetall(key)).items()}
        s, r, leased = fields.get("s", 0), fields.get("r", 0), fields.get("l", 0)
        assert s + r <= limit + self.overshoot
        unflushed = sum(w.leases.accounts[self.account.id].leases[key].unflushed
                        for w in self.workers if w.leases and self.account.id in w.leases.accounts
                        and key in w.leases.accounts[self.account.id].leases)
        inflight = sum(res.estimate_nanos for _, res in self.inflight)
        assert s + unflushed == self.settled
        assert self.settled + inflight <= limit + self.overshoot  # admitted ≤ cap, at every step
        records = {f.decode(): int(v) for f, v in (await self.redis.hgetall(lease_hash_key(self.account.id))).items()}
        on_counter = sum(v for f, v in records.items() if f.endswith("|" + key))
        assert leased == on_counter
        reserved_by_calls = sum(res.estimate_nanos for _, res in self.inflight if not res.leased)
        assert r == on_counter + reserved_by_calls
        for worker in self.workers:
            assert worker.leases is not None
            state = worker.leases.accounts.get(self.account.id)
            lease = state.leases.get(key) if state else None
            assert (lease.held if lease else 0) == records.get(f"{worker.leases.worker}|{key}", 0)


async def world(*, workers: int, limit: int, fraction: float, spool: Path, plan_limit: int = 0) -> World:
    budgets = (BudgetEntry(1, "account", "", "month", limit, True),
               BudgetEntry(2, "account", "", "day", 10**15, False))
    account = account_entry(next(accounts), budgets=budgets, monthly_request_limit=plan_limit)
    redis = Redis.from_url(settings.REDIS_URL)
    pipeline = PipelinedRedis(settings.REDIS_URL, timeout=5)
    quotas = [
        Quota(pipeline, reservation_ttl_ms=60_000,
              leases=LeaseBook(pipeline, fraction=fraction, ttl_seconds=10, flush_seconds=0.1, spool_dir=spool))
        for _ in range(workers)
    ]
    await redis.sadd(seeded_marker_key(account.id), quotas[0].fingerprint(account))
    return World(account, quotas, redis, pipeline)


async def close(w: World) -> None:
    for worker in w.workers:
        assert worker.leases is not None
        worker.leases.segments.close()
    await w.redis.aclose()
    await w.pipeline.close()


# Rounds of calls of a typical size (estimates vary around it) on random workers, some of them settled at
# or off their estimates, each round ending with a batch from some workers.
ROUNDS = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 3), st.sampled_from([1] * 6 + [2])), min_size=8, max_size=40),  # calls
        st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from([0.0, 0.5, 1.0, 1.0, 1.3])), max_size=40),
        st.lists(st.integers(0, 3), min_size=1, max_size=4),  # workers that send a batch
    ),
    min_size=2, max_size=6,
)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workers=st.integers(1, 4), size=st.integers(1, 2_000), calls_fit=st.one_of(st.integers(1, 60),
       st.integers(500, 5_000)), fraction=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
       plan_limit=st.sampled_from([0, 5, 1_000_000]), rounds=ROUNDS)
def test_leases_never_admit_past_a_hard_cap(
    workers: int, size: int, calls_fit: int, fraction: float, plan_limit: int,
    rounds: list[tuple[list[tuple[int, int]], list[tuple[int, float]], list[int]]],
) -> None:
    limit = size * calls_fit
    spool = Path(tempfile.mkdtemp())
    saved = quota_module.BUSY_WAIT_SECONDS
    quota_module.BUSY_WAIT_SECONDS = 0.0  # nobody flushes in the background here: a busy call is denied

    async def main() -> None:
        w = await world(workers=workers, limit=limit, fraction=fraction, spool=spool, plan_limit=plan_limit)
        try:
            for calls, settles, batches in rounds:
                for who, amount in calls:
                    await w.call(who % workers, size * amount)
                    await w.check()
                for index, ratio in settles:
                    if w.inflight:
                        await w.settle(index, ratio)
                        await w.check()
                for who in batches:
                    leases = w.workers[who % workers].leases
                    assert leases is not None
                    assert await leases.flush()
                    await w.check()
            while w.inflight:
                await w.settle(0, 1.0)
                await w.check()
            event("some calls admitted against a lease" if w.leased else "no call admitted against a lease")
            for worker in w.workers:
                assert worker.leases is not None
                assert await worker.leases.flush(final=True)
            await w.check()
            # Everything given back: only what was spent is left, in both budgets.
            hard = {k.decode(): int(v) for k, v in (await w.redis.hgetall(w.hard_counter())).items()}
            assert hard == ({"s": w.settled, "r": 0} if w.admitted else {"r": 0} if hard else {})
            soft = w.plan(0).counters[1].key
            assert int(await w.redis.hget(soft, "s") or 0) == w.settled
            assert await w.redis.hlen(lease_hash_key(w.account.id)) == 0
            assert await w.redis.xlen(events_stream_key(w.account.id)) == w.settled_calls
            if plan_limit:
                month = w.plan(0).reserve_keys[2]
                assert int(await w.redis.get(month) or 0) == w.admitted
                assert w.admitted <= plan_limit
        finally:
            await close(w)

    try:
        asyncio.run(main())
    finally:
        quota_module.BUSY_WAIT_SECONDS = saved
        shutil.rmtree(spool, ignore_errors=True)


def test_a_steady_worker_admits_without_redis_and_gives_the_room_back(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=0.25, spool=tmp_path)
        quota = w.workers[0]
        try:
            for _ in range(20):  # a second's worth of spend, through Redis
                assert await w.call(0, 1_000)
            assert quota.leases is not None
            assert await quota.leases.flush()  # sizes a lease from that spend
            trips = quota.round_trips_before_upstream
            for _ in range(15):
                assert await w.call(0, 1_000)
            assert quota.round_trips_before_upstream == trips  # all admitted locally
            assert all(res.leased for _, res in w.inflight[-15:])
            fields = await w.redis.hgetall(w.hard_counter())
            assert int(fields[b"l"]) >= 15_000  # the budgets page shows leased room
            assert metrics.lease_room_usd.labels("account_budget")._value.get() > 0  # and /metrics
            while w.inflight:
                await w.settle(0, 1.0)
            await w.check()
            assert await quota.leases.flush(final=True)
            await w.check()
            assert await w.redis.hgetall(w.hard_counter()) == {b"s": str(w.settled).encode(), b"r": b"0"}
        finally:
            await close(w)

    asyncio.run(main())


def test_leases_off_is_the_round_trip_path(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=0.0, spool=tmp_path)
        try:
            assert w.workers[0].leases is None
            for _ in range(30):
                assert await w.call(0, 1_000)
            assert w.workers[0].round_trips_before_upstream == 30
        finally:
            await w.redis.aclose()
            await w.pipeline.close()

    asyncio.run(main())


def test_a_key_with_rate_limits_is_never_leased(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=0.25, spool=tmp_path)
        quota = w.workers[0]
        limited = key_entry(KEY_ID, account_id=w.account.id, requests_per_minute=10_000)
        try:
            for _ in range(3):
                for _ in range(20):
                    plan = quota.plan_for(w.account, limited, feature="", tenant="", now=time.time())
                    verdict = await quota.admit(rid=f"r{next(accounts)}", plan=plan, estimate_nanos=1_000,
                                                estimated_tokens=1)
                    assert isinstance(verdict, Reservation) and not verdict.leased
                assert quota.leases is not None
                await quota.leases.flush()
            assert quota.round_trips_before_upstream == 60
        finally:
            await close(w)

    asyncio.run(main())


def test_a_dead_workers_lease_comes_back_after_its_ttl(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=2, limit=200_000, fraction=1.0, spool=tmp_path)
        dead = w.workers[0]
        assert dead.leases is not None
        dead.leases.ttl_ms = 300
        try:
            for _ in range(20):
                assert await w.call(0, 1_000)
            while w.inflight:
                await w.settle(0, 1.0)
            assert await dead.leases.flush()
            leased = int((await w.redis.hgetall(w.hard_counter()))[b"l"])
            assert leased > 0
            # Worker 0 dies holding it. The room fits no call now but comes back after the TTL.
            room = 200_000 - 20_000
            assert not await w.call(1, room)
            await asyncio.sleep(0.35)
            assert await w.call(1, room)
            fields = {k: int(v) for k, v in (await w.redis.hgetall(w.hard_counter())).items()}
            assert fields == {b"s": 20_000, b"r": room}
        finally:
            await close(w)

    saved = quota_module.BUSY_WAIT_SECONDS
    quota_module.BUSY_WAIT_SECONDS = 0.0
    try:
        asyncio.run(main())
    finally:
        quota_module.BUSY_WAIT_SECONDS = saved


def test_a_call_at_the_cap_waits_for_leased_room_another_worker_gives_back(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=2, limit=100_000, fraction=1.0, spool=tmp_path)
        holder = w.workers[0]
        assert holder.leases is not None
        try:
            for _ in range(10):
                assert await w.call(0, 1_000)
            while w.inflight:
                await w.settle(0, 1.0)
            assert await holder.leases.flush()
            leased = int((await w.redis.hgetall(w.hard_counter()))[b"l"])
            assert leased > 0
            running = asyncio.get_running_loop().create_task(holder.leases.run())  # the holder batches on
            try:
                assert await w.call(1, 100_000 - 10_000)  # fits only once the holder gave its room back
            finally:
                running.cancel()
            fields = {k: int(v) for k, v in (await w.redis.hgetall(w.hard_counter())).items()}
            assert fields == {b"s": 10_000, b"r": 90_000}
        finally:
            await close(w)

    asyncio.run(main())


def test_a_killed_workers_spooled_settles_are_applied_once(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=0.25, spool=tmp_path)
        quota = w.workers[0]
        leases = quota.leases
        assert leases is not None
        try:
            for _ in range(20):
                assert await w.call(0, 1_000)
            while w.inflight:
                await w.settle(0, 1.0)
            assert await leases.flush()
            for _ in range(10):
                assert await w.call(0, 1_000)
            assert all(res.leased for _, res in w.inflight)
            while w.inflight:
                await w.settle(0, 0.5)  # settled locally: in the spool segment, not in Redis
            await asyncio.sleep(0)  # the loop iteration ends: its lines are written
            segment = leases.segments.path
            assert segment is not None and segment.exists()
            kept = segment.read_bytes()
            assert await leases.flush()
            assert not segment.exists()  # applied: deleted
            # As if killed between the batch reaching Redis and the segment's deletion: it is skipped.
            segment.write_bytes(kept)
            for _ in range(5):
                assert await w.call(0, 1_000)
            assert all(res.leased for _, res in w.inflight)
            while w.inflight:
                await w.settle(0, 1.0)
            await asyncio.sleep(0)
            killed = leases.segments.path
            assert killed is not None and killed != segment
            # kill -9: the process's locks go with it, its files stay.
            leases.segments.close()
            s_before = int(await w.redis.hget(w.hard_counter(), "s"))
            events_before = await w.redis.xlen(events_stream_key(w.account.id))
            assert await lease_spool_drain(directory=tmp_path, redis=w.pipeline) == 2
            assert not killed.exists() and not segment.exists()
            fields = {k: int(v) for k, v in (await w.redis.hgetall(w.hard_counter())).items()}
            assert fields == {b"s": s_before + 5_000, b"r": 0}  # spend applied, the dead lease given back
            assert await w.redis.xlen(events_stream_key(w.account.id)) == events_before + 5
            assert await w.redis.hlen(lease_hash_key(w.account.id)) == 0
            assert await lease_spool_drain(directory=tmp_path, redis=w.pipeline) == 0
        finally:
            await w.redis.aclose()
            await w.pipeline.close()

    asyncio.run(main())


def test_a_batch_sent_twice_is_applied_once(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=0.25, spool=tmp_path)
        leases = w.workers[0].leases
        assert leases is not None
        try:
            for _ in range(20):
                assert await w.call(0, 1_000)
            while w.inflight:
                await w.settle(0, 1.0)
            assert await leases.flush()
            for _ in range(10):
                assert await w.call(0, 1_000)
            while w.inflight:
                await w.settle(0, 1.0)
            batch = leases._build(final=False)
            assert batch is not None
            assert await leases._send(batch)
            assert await leases._send(batch)  # its reply lost: sent again, skipped, the books resynced
            await w.check()
            assert int(await w.redis.hget(w.hard_counter(), "s")) == 30_000
        finally:
            await close(w)

    asyncio.run(main())


def test_plan_requests_are_leased_and_given_back(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=0.25, spool=tmp_path, plan_limit=1_000_000)
        leases = w.workers[0].leases
        assert leases is not None
        month = w.plan(0).reserve_keys[2]
        assert month == plan_counter_key(w.account.id, quota_module.datetime.fromtimestamp(
            int(month.rsplit(":", 1)[1]), quota_module.UTC))
        try:
            for _ in range(20):
                assert await w.call(0, 1_000)
            assert await leases.flush()
            assert int(await w.redis.get(month)) > 20  # requests leased on top of those made
            for _ in range(10):
                assert await w.call(0, 1_000)
            assert all(res.leased and res.plan_lease == month for _, res in w.inflight[-10:])
            while w.inflight:
                await w.settle(0, 1.0)
            assert await leases.flush(final=True)
            assert int(await w.redis.get(month)) == 30
        finally:
            await close(w)

    asyncio.run(main())


@pytest.mark.parametrize("fraction", [-1.0, 2.0])
def test_the_fraction_is_clamped(fraction: float, tmp_path: Path) -> None:
    book = LeaseBook(PipelinedRedis(settings.REDIS_URL, timeout=1), fraction=fraction, ttl_seconds=10,
                     flush_seconds=0.1, spool_dir=tmp_path)
    assert 0.0 <= book.fraction <= 1.0


def test_a_lowered_limit_stops_grants_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=1.0, spool=tmp_path)
        leases = w.workers[0].leases
        assert leases is not None
        try:
            for _ in range(20):
                assert await w.call(0, 1_000)
            while w.inflight:
                await w.settle(0, 1.0)
            assert await leases.flush()
            assert int(await w.redis.hget(w.hard_counter(), "l")) > 0
            # An admin lowers the cap to what is spent plus two calls: the very next batch follows it.
            lowered = BudgetEntry(1, "account", "", "month", 22_000, True)
            w.account = account_entry(w.account.id, budgets=(lowered, w.account.budgets[1]))
            for _ in range(3):
                await w.call(0, 1_000)
                await leases.flush()
                fields = {k.decode(): int(v) for k, v in (await w.redis.hgetall(w.hard_counter())).items()}
                assert fields["s"] + fields["r"] <= 22_000
            while w.inflight:
                await w.settle(0, 1.0)
            await leases.flush()
            await leases.flush()  # the cap Redis gave in the last batch is 0: the free room goes back
            fields = {k.decode(): int(v) for k, v in (await w.redis.hgetall(w.hard_counter())).items()}
            assert "l" not in fields and fields["r"] == 0 and fields["s"] == 22_000
        finally:
            await close(w)

    saved = quota_module.BUSY_WAIT_SECONDS
    quota_module.BUSY_WAIT_SECONDS = 0.0
    try:
        asyncio.run(main())
    finally:
        quota_module.BUSY_WAIT_SECONDS = saved


def test_a_batch_cut_short_goes_again_before_the_next(tmp_path: Path) -> None:
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=0.25, spool=tmp_path)
        leases = w.workers[0].leases
        assert leases is not None
        try:
            for _ in range(20):
                assert await w.call(0, 1_000)
            while w.inflight:
                await w.settle(0, 1.0)
            assert await leases.flush()
            for _ in range(10):
                assert await w.call(0, 1_000)
            while w.inflight:
                await w.settle(0, 1.0)
            cut = asyncio.get_running_loop().create_task(leases.flush())
            await asyncio.sleep(0)  # built and written, no answer read yet
            cut.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cut
            assert leases.failed  # kept
            assert await leases.flush(final=True)  # the cut batch first, then the last one
            await w.check()
            fields = {k.decode(): int(v) for k, v in (await w.redis.hgetall(w.hard_counter())).items()}
            assert fields == {"s": 30_000, "r": 0}
        finally:
            await close(w)

    asyncio.run(main())


def test_leases_start_once_the_counters_are_seeded(tmp_path: Path) -> None:
    """A worker's first batch may race the seeding of the account's counters: it is granted nothing then,
    and asks again on the next batch."""
    async def main() -> None:
        w = await world(workers=1, limit=10**12, fraction=0.25, spool=tmp_path)
        leases = w.workers[0].leases
        assert leases is not None
        try:
            for _ in range(20):
                assert await w.call(0, 1_000)
            fingerprint = w.workers[0].fingerprint(w.account)
            await w.redis.srem(seeded_marker_key(w.account.id), fingerprint)
            assert await leases.flush()
            assert not await w.redis.hlen(lease_hash_key(w.account.id))  # unseeded: nothing granted
            await w.redis.sadd(seeded_marker_key(w.account.id), fingerprint)
            assert await leases.flush()
            assert await w.redis.hlen(lease_hash_key(w.account.id))
            assert await w.call(0, 1_000)
            assert w.inflight[-1][1].leased
            while w.inflight:
                await w.settle(0, 1.0)
            await w.check()
        finally:
            await close(w)

    asyncio.run(main())

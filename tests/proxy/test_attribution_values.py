"""Attribution values are data: whatever a client puts in X-Tenant-ID or X-Feature-Name, the real budget
scripts on the real Redis move only the counters of that value, in that account, and give every
reservation back."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from proxy.budgets import MAX_VALUE_TOKEN, BudgetLayout, budget_value_of, budget_value_token
from proxy.directory import AccountEntry, BudgetEntry, KeyEntry
from proxy.quota import Quota, Reservation, seeded_marker_key
from proxy.redis_pipeline import PipelinedRedis

from ..support import account_entry, key_entry

VICTIM, ATTACKER = 902, 901
NO_CAP = 10**18


def probe_account(account_id: int) -> AccountEntry:
    base = account_id * 10
    budgets = (
        BudgetEntry(base + 1, "account", "", "month", NO_CAP, True),
        BudgetEntry(base + 2, "tenant", "*", "day", NO_CAP, True),
        BudgetEntry(base + 3, "tenant", "acme", "day", NO_CAP, True),
        BudgetEntry(base + 4, "feature", "*", "month", NO_CAP, True),
        BudgetEntry(base + 5, "feature", "*", "total", NO_CAP, False),
        BudgetEntry(base + 6, "key", "*", "total", NO_CAP, True),
    )
    return account_entry(account_id, timezone="Asia/Kolkata", monthly_request_limit=NO_CAP,
                         budgets=budgets)


def probe_key(account_id: int) -> KeyEntry:
    return key_entry(account_id + 5000, account_id=account_id)


SEPARATORS = "|,:{}[]*?\\%#~\n\r\t\x00 \"'"
values = st.one_of(
    st.just(""),
    st.sampled_from(["acme", "x|tk:{a:902}:b:", "|", "||", "a|b", "{a:902}", "%7C", "#", "~", "*"]),
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(SEPARATORS + "ab€😀"), max_size=30),
    st.tuples(st.text(alphabet=st.sampled_from(SEPARATORS + "é"), min_size=1, max_size=4),
              st.integers(10_000, 10_240)).map(lambda t: (t[0] * 10_240)[:t[1]]),
)
# A value may end in "|" and the name of a counter or key it has no business touching.
targets = st.sampled_from(["", "victim-account", "victim-tenant", "own-plan", "own-other-tenant"])
calls = st.lists(
    st.tuples(values, values, targets, st.sampled_from(["settle", "crash", "late"]),
              st.one_of(st.integers(0, 10**6), st.integers(10**14, 10**15)), st.integers(0, 10**6)),
    min_size=1, max_size=10,
)


def snapshot(client: Redis, account_id: int) -> dict[bytes, object]:
    out: dict[bytes, object] = {}
    for key in client.scan_iter(match=f"tk:{{a:{account_id}}}*"):
        kind = client.type(key)
        read = {b"hash": client.hgetall, b"string": client.get, b"set": client.smembers}.get(kind)
        out[key] = read(key) if read else kind
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(calls=calls)
def test_any_attribution_value_moves_only_its_own_counters(calls: list) -> None:
    asyncio.run(_exercise(calls))


async def _exercise(calls: list) -> None:
    client = Redis.from_url(django_settings.REDIS_URL)
    client.flushdb()
    redis = PipelinedRedis(django_settings.REDIS_URL, timeout=10)
    quota = Quota(redis, reservation_ttl_ms=60_000)
    crashing = Quota(redis, reservation_ttl_ms=0)  # its reservations expire at once, as if the process died
    victim, attacker = probe_account(VICTIM), probe_account(ATTACKER)
    victim_key, attacker_key = probe_key(VICTIM), probe_key(ATTACKER)
    try:
        for account in (victim, attacker):
            client.sadd(seeded_marker_key(account.id), quota.fingerprint(account))
        now = time.time()

        # The victim has spent something: its counters exist.
        plan = quota.plan_for(victim, victim_key, feature="f", tenant="acme-victim", now=now)
        held = await quota.reserve(rid="v0", plan=plan, estimate_nanos=500, estimated_tokens=1)
        assert isinstance(held, Reservation)
        await quota.settle(reservation=held, actual_nanos=400, actual_tokens=1, event=b"")
        victim_counters = [c.key for c in plan.counters]
        before = snapshot(client, VICTIM)

        other = quota.plan_for(attacker, attacker_key, feature="", tenant="someone-else", now=now)
        target_keys = {
            "": "",
            "victim-account": victim_counters[0],
            "victim-tenant": victim_counters[1],  # the '*' tenant budget's counter of "acme-victim"
            "own-plan": other.reserve_keys[2],
            "own-other-tenant": other.counters[1].key,
        }
        expected: dict[str, int] = defaultdict(int)
        key_of: dict[str, tuple[int, str]] = {}
        late: list[tuple[Reservation, int]] = []
        for n, (tenant, feature, target, fate, estimate, actual) in enumerate(calls):
            if target:
                tenant = f"{tenant}|{target_keys[target]}"
            runner = quota if fate == "settle" else crashing
            call_plan = runner.plan_for(attacker, attacker_key, feature=feature, tenant=tenant, now=now)
            applicable = BudgetLayout(attacker.budgets).counters_for_call(
                key_id=attacker_key.id, key_name=attacker_key.name, feature=feature, tenant=tenant)
            for counter, (budget, value) in zip(call_plan.counters, applicable, strict=True):
                assert counter.key.startswith(f"tk:{{a:{ATTACKER}}}:")
                assert len(counter.key) <= 256
                # One counter per budget and value: no two values share a key.
                assert key_of.setdefault(counter.key, (budget.id, value)) == (budget.id, value)
            reservation = await runner.reserve(rid=f"r{n}", plan=call_plan, estimate_nanos=estimate,
                                                estimated_tokens=1)
            assert isinstance(reservation, Reservation)
            if fate == "settle":
                await quota.settle(reservation=reservation, actual_nanos=actual, actual_tokens=1, event=b"")
            if fate in ("settle", "late"):
                for counter in reservation.counters:
                    expected[counter.key] += actual
            if fate == "late":
                late.append((reservation, actual))

        # One more call sweeps every expired reservation; the late settles then arrive.
        sweep = quota.plan_for(attacker, attacker_key, feature="", tenant="", now=now)
        last = await quota.reserve(rid="sweep", plan=sweep, estimate_nanos=1, estimated_tokens=1)
        assert isinstance(last, Reservation)
        await quota.settle(reservation=last, actual_nanos=0, actual_tokens=1, event=b"")
        for reservation, actual in late:
            await quota.settle(reservation=reservation, actual_nanos=actual, actual_tokens=1, event=b"")

        assert snapshot(client, VICTIM) == before
        assert client.hlen(f"tk:{{a:{ATTACKER}}}:rsv") == 0
        assert client.zcard(f"tk:{{a:{ATTACKER}}}:rsvz") == 0
        for key in client.scan_iter(match=f"tk:{{a:{ATTACKER}}}:b*"):
            counter = {k: int(v) for k, v in client.hgetall(key).items()}
            assert counter.get(b"r", 0) == 0, key
            assert counter.get(b"s", 0) == expected[key.decode()], key
        assert int(client.get(other.reserve_keys[2])) == len(calls) + 1
    finally:
        await redis.close()
        client.close()


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=300))
def test_a_counter_key_holds_a_value_encoded_and_the_dashboard_reads_it_back(value: str) -> None:
    token = budget_value_token(value)
    assert len(token) <= MAX_VALUE_TOKEN + 1
    if token.startswith("#"):
        assert len(token) == 33 and budget_value_of(token) == token  # too long to keep: a hash, shown as such
    else:
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%")
        assert budget_value_of(token) == value


def test_a_reservation_record_of_the_previous_format_is_dropped_without_touching_any_counter() -> None:
    async def run() -> None:
        client = Redis.from_url(django_settings.REDIS_URL)
        redis = PipelinedRedis(django_settings.REDIS_URL, timeout=10)
        quota = Quota(redis, reservation_ttl_ms=60_000)
        attacker, key = probe_account(ATTACKER), probe_key(ATTACKER)
        try:
            client.sadd(seeded_marker_key(ATTACKER), quota.fingerprint(attacker))
            own, other = f"tk:{{a:{ATTACKER}}}:b:{ATTACKER * 10 + 1}:0", f"tk:{{a:{VICTIM}}}:b2:{VICTIM * 10 + 1}:0"
            for counter in (own, other):
                client.hset(counter, mapping={"s": 5, "r": 7})
            client.hset(f"tk:{{a:{ATTACKER}}}:rsv", "old", f"7|1|{own}|{other}|tk:{{a:{ATTACKER}}}:plan:0")
            client.zadd(f"tk:{{a:{ATTACKER}}}:rsvz", {"old": 0})
            client.set(f"tk:{{a:{ATTACKER}}}:plan:0", 3)
            plan = quota.plan_for(attacker, key, feature="f", tenant="t", now=time.time())
            assert isinstance(await quota.reserve(rid="new", plan=plan, estimate_nanos=1, estimated_tokens=1),
                              Reservation)
            assert not client.hexists(f"tk:{{a:{ATTACKER}}}:rsv", "old")
            assert [client.hgetall(c) for c in (own, other)] == [{b"s": b"5", b"r": b"7"}] * 2
        finally:
            await redis.close()
            client.close()

    asyncio.run(run())

"""A reservation that expires (its process presumed dead) gives back what it reserved on its own counters
only, whatever the tenant value that named them: client values must not split or join the list of
counters a reservation keeps in Redis (CONTRACT §1: no client value changes another tenant's counters)."""

from __future__ import annotations

import time

import httpx
import orjson
from hypothesis import example, given, settings

from proxy.budgets import account_prefix
from tokonomics.redis_client import sync_redis

from .conftest import BOUNDED, InProcess
from .invariants import Judge, bystander_case
from .strategies import Case, header_value, spares_bystanders

HELD = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "stream": True,
                     "messages": [{"role": "user", "content": "hi"}]})


def expire_mid_call(judge: Judge, tenant: bytes) -> None:
    """A call of `tenant` held by the provider after its first event; its reservation is made to expire,
    another call sweeps it, then the provider finishes. The judge checks that call and everyone's counters."""
    assert isinstance(judge.target, InProcess)
    token = f"expire-{judge.cases}"
    case = Case("POST", "openai", "/chat/completions", body=HELD,
                headers=[(b"x-tenant-id", tenant), (b"x-sim-hold", token.encode())])
    case.hostile["tenant"] = [tenant]
    pending = judge.target.start(case)
    deadlines = f"{account_prefix(judge.world.acme.pk)}:rsvz"
    client = sync_redis()
    give_up = time.monotonic() + 10
    while not (held := client.zrange(deadlines, 0, -1)):
        assert time.monotonic() < give_up and not pending.done(), "the held call reserved nothing"
        time.sleep(0.01)
    client.zadd(deadlines, dict.fromkeys(held, 0), xx=True)  # as if its process had died long ago
    sweeper = judge.target.send(bystander_case("sweeper"))
    assert sweeper.status == 200, (sweeper.status, sweeper.body[:300])
    judge.world.sim.take()
    httpx.post(f"{judge.world.sim.url}/_sim/release/{token}")
    judge.check(case, pending.result(30))


def test_an_expired_reservation_gives_back_only_its_own_counters(in_process: Judge) -> None:
    victim = in_process.bystander_keys["acme's bystander tenant and feature"][0]

    @settings(BOUNDED, max_examples=6)
    @given(tenant=header_value.filter(spares_bystanders))
    @example(tenant=f"x|{victim}".encode())
    @example(tenant=f"|{victim}|".encode())
    def each(tenant: bytes) -> None:
        expire_mid_call(in_process, tenant)

    each()
    in_process.finish()

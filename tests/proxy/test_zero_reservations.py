"""A call that reserves nothing (a free route, an unmetered one) under a budget: its settle and the expiry
of its reservation must work like any other. Redis refuses `-0` as an integer, which Lua makes of `-amount`
when the amount is 0."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx

from billing.models import Budget
from proxy.budgets import BUDGET_KEY_FORMAT, account_prefix
from tokonomics.redis_client import sync_redis

from ..support import KEY, Stack

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _budget(stack: Stack) -> Budget:
    return Budget.objects.create(account=stack.account, scope="account", period="month", limit_usd=Decimal(100),
                                 hard=True)


def test_calls_that_reserved_nothing_settle(stack: Stack) -> None:
    _budget(stack)
    headers = {"Authorization": f"Bearer {KEY}", "X-Sim-Latency-Ms": "300"}
    # Three at once: had their settles failed, the third failure in a row would open the Redis breaker.
    with ThreadPoolExecutor(3) as pool:
        listed = list(pool.map(lambda _: httpx.get(f"{stack.proxy}/proxy/openai/models", headers=headers,
                                                   timeout=10), range(3)))
    assert [r.status_code for r in listed] == [200] * 3
    time.sleep(0.1)  # each settles just after its response has left
    after = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                       headers={"Authorization": f"Bearer {KEY}"})
    assert after.status_code == 200, after.text


def test_an_expired_reservation_of_nothing_does_not_break_the_next_call(stack: Stack) -> None:
    budget = _budget(stack)
    first = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                       headers={"Authorization": f"Bearer {KEY}"})
    assert first.status_code == 200
    client = sync_redis()
    prefix = account_prefix(stack.account.pk)
    counter = next(k.decode() for k in client.scan_iter(match=f"{prefix}:b{BUDGET_KEY_FORMAT}:{budget.pk}:*"))
    # What a crashed process leaves of a call that reserved nothing, its deadline long past.
    client.hset(f"{prefix}:rsv", "req_crashed", "0|0|" + json.dumps([counter]))
    client.zadd(f"{prefix}:rsvz", {"req_crashed": 0})
    second = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                        headers={"Authorization": f"Bearer {KEY}"})
    assert second.status_code == 200, second.text
    assert client.zscore(f"{prefix}:rsvz", "req_crashed") is None

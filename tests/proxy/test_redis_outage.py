"""Redis unreachable (CONTRACT §2): no call hangs; `closed` answers 503, `open` lets calls through
unenforced, the default does the first for calls a hard budget covers and the second for the rest;
enforcement resumes by itself, and a Redis that comes back empty is re-seeded from the usage
records before hard budgets admit again.

These tests run a private redis-server (never the machine's shared one) and a proxy pointed at it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from billing.models import Budget, PriceOverride, UsageRecord
from billing.usage.ledger import usage_ingest
from proxy import metrics
from tokonomics.redis_client import sync_redis

from .. import support
from ..support import CHAT, KEY, PrivateRedis, ServerThread, Stack, make_account, make_key, wait_until

CALL = Decimal("0.01")
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
# A call must be answered well within this while Redis is away (its timeout is 0.25 s).
NEVER_HANGS_SECONDS = 1.5


@pytest.fixture
def outage(settings, transactional_db, simulator, plans, private_redis) -> Iterator[Stack]:
    """The live stack, with the proxy and the Django side both on the private Redis."""
    settings.REDIS_URL = private_redis.url
    sync_redis.cache_clear()
    account = make_account("acme", simulator, plans["pro"])
    for provider, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")):
        PriceOverride.objects.create(account=account, provider=provider, model=model,
                                     input_per_mtok=Decimal(0), output_per_mtok=Decimal(1000))
    key = make_key(account, KEY)
    try:
        with ServerThread() as server:
            yield Stack(proxy=server.url, sim=simulator, account=account, key=key)
    finally:
        sync_redis.cache_clear()


def chat(stack: Stack, **headers: str) -> httpx.Response:
    started = time.monotonic()
    response = support.chat(stack, **headers)
    assert time.monotonic() - started < NEVER_HANGS_SECONDS
    return response


def messages(stack: Stack, **headers: str) -> httpx.Response:
    return httpx.post(f"{stack.proxy}/proxy/anthropic/v1/messages", json=MESSAGES,
                      headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", **headers}, timeout=10)


def budget(stack: Stack, calls: float, **fields: str) -> Budget:
    return Budget.objects.create(account=stack.account, limit_usd=CALL * Decimal(str(calls)),
                                 **{"scope": "account", "match": "", "period": "month", **fields})


def counter(budget: Budget) -> dict[str, int]:
    client = sync_redis()
    keys = list(client.scan_iter(match=f"tk:{{a:{budget.account_id}}}:b2:{budget.pk}:*"))
    assert len(keys) == 1
    return {k.decode(): int(v) for k, v in client.hgetall(keys[0]).items()}


def settled_records() -> dict[str, UsageRecord]:
    usage_ingest(max_seconds=1)
    return {r.request_id: r for r in UsageRecord.objects.all()}


def unenforced_count() -> float:
    return metrics.unenforced_total.labels("openai")._value.get()


def test_default_policy_503s_what_a_hard_budget_covers_and_lets_the_rest_through(
    outage: Stack, private_redis: PrivateRedis
) -> None:
    budget(outage, 100, scope="tenant", match="globex")
    assert chat(outage, **{"X-Tenant-ID": "globex"}).status_code == 200
    private_redis.kill()

    covered = chat(outage, **{"X-Tenant-ID": "globex"})
    assert covered.status_code == 503
    assert covered.json()["error"]["type"] == "service_unavailable"
    anthropic_covered = messages(outage, **{"X-Tenant-ID": "globex"})
    assert anthropic_covered.status_code == 503
    body = anthropic_covered.json()
    assert body["type"] == "error" and body["error"]["type"] == "service_unavailable"
    before = unenforced_count()
    free = chat(outage, **{"X-Tenant-ID": "initech"})
    assert free.status_code == 200
    assert unenforced_count() == before + 1

    private_redis.start()
    wait_until(lambda: chat(outage, **{"X-Tenant-ID": "globex"}).status_code == 200, 6, interval=0.1)
    # The events kept in the proxy while Redis was away reach the database once it is back.
    wait_until(lambda: {covered.headers["x-tokonomics-request-id"], free.headers["x-tokonomics-request-id"]}
               <= settled_records().keys(), 6, interval=0.1)
    records = settled_records()
    assert records[covered.headers["x-tokonomics-request-id"]].status_code == 503
    assert records[free.headers["x-tokonomics-request-id"]].enforced is False


def test_closed_denies_every_call_and_open_lets_hard_budget_calls_through(
    outage: Stack, private_redis: PrivateRedis
) -> None:
    cap = budget(outage, 100)
    account = outage.account
    account.on_redis_unavailable = "closed"
    account.save()
    answered: list[httpx.Response] = []

    def status() -> int:
        answered.append(chat(outage))
        return answered[-1].status_code

    assert status() == 200
    private_redis.pause()
    assert status() == 503
    # Without Redis the proxy cannot see the configuration version, so it reloads its cache every poll
    # (update(): saving would try to bump that version in the paused Redis).
    type(account).objects.filter(pk=account.pk).update(on_redis_unavailable="open")
    wait_until(lambda: status() == 200, 6, interval=0.1)
    assert {status() for _ in range(3)} == {200}

    private_redis.resume()
    wait_until(lambda: status() == 200, 6, interval=0.1)
    wait_until(lambda: counter(cap).get("r") == 0, 6, interval=0.1)
    wait_until(lambda: len(settled_records()) == len(answered), 6, interval=0.1)
    records = settled_records()
    assert sum(not r.enforced for r in records.values() if r.status_code == 200) >= 4
    # What went through unenforced still reached the budget's counter once Redis answered.
    admitted = sum(r.status_code == 200 for r in answered)
    wait_until(lambda: counter(cap)["s"] == admitted * CALL * 10**9, 6, interval=0.1)


def test_settles_that_could_not_reach_redis_are_replayed_when_it_answers(
    outage: Stack, private_redis: PrivateRedis
) -> None:
    cap = budget(outage, 100)
    body = {**CHAT, "stream": True, "max_tokens": 20}
    headers = {"Authorization": f"Bearer {KEY}", "X-Sim-Hold": "blip", "X-Sim-Words": "5"}
    with httpx.stream("POST", f"{outage.proxy}/proxy/openai/chat/completions", json=body, headers=headers,
                      timeout=10) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        assert counter(cap) == {"r": 20 * 10**6}
        private_redis.pause()
        httpx.post(f"{outage.sim}/_sim/release/blip")
        list(lines)  # the stream ends while its settle cannot reach Redis
    assert chat(outage).status_code == 503  # the default policy: a hard budget covers it
    private_redis.resume()
    # No false 429 and no reservation stuck until its TTL: the settle is replayed.
    answered: list[int] = []
    wait_until(lambda: answered.append(chat(outage).status_code) or answered[-1] == 200, 6, interval=0.1)
    assert set(answered) <= {200, 503}
    wait_until(lambda: counter(cap).get("r") == 0, 6, interval=0.1)
    assert counter(cap)["s"] == (5 + 10) * 10**6


def test_a_redis_that_comes_back_empty_is_reseeded_before_hard_budgets_admit(
    outage: Stack, private_redis: PrivateRedis
) -> None:
    cap = budget(outage, 3)
    soft = budget(outage, 1, hard=False, period="day")
    assert [chat(outage).status_code for _ in range(4)] == [200, 200, 200, 429]
    wait_until(lambda: len(settled_records()) == 4, 6, interval=0.1)
    private_redis.kill()
    assert chat(outage).status_code == 503
    private_redis.start()  # empty: no counters, no seeded marker

    # Enforcement resumes by itself, from the records: the cap is still reached.
    wait_until(lambda: chat(outage).status_code == 429, 6, interval=0.1)
    assert counter(cap) == {"s": 3 * CALL * 10**9}
    assert counter(soft) == {"s": 3 * CALL * 10**9}

"""Budget enforcement end to end (CONTRACT §2): the live proxy, the simulator, real Redis.

Prices are overridden so that input is free and each output token costs $0.001: a call with
max_tokens=10 then costs exactly $0.01, and its estimate is exact unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter as Tally
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from billing.models import Budget, PriceOverride, UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.periods import period_bounds
from tokonomics.redis_client import sync_redis

from ..support import CHAT, KEY, Stack, chat, proxy_config_seen

CALL = Decimal("0.01")
NANOS = 10**9
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def priced(stack: Stack) -> Stack:
    for provider, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")):
        PriceOverride.objects.create(account=stack.account, provider=provider, model=model,
                                     input_per_mtok=Decimal(0), output_per_mtok=Decimal(1000))
    return stack


def budget(stack: Stack, *, scope: str = "account", match: str = "", period: str = "month", calls: float = 1,
           hard: bool = True) -> Budget:
    return Budget.objects.create(account=stack.account, scope=scope, match=match, period=period,
                                 limit_usd=CALL * Decimal(str(calls)), hard=hard)


def counters(budget: Budget) -> dict[str, dict[str, int]]:
    """{value ('' for a budget's one counter): {field: nano-dollars}} for the budget's current period,
    once the calls answered so far have settled (the proxy settles just after the response)."""
    deadline = time.monotonic() + 3
    while (found := _counters(budget)) and any(f.get("r") for f in found.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def _counters(budget: Budget) -> dict[str, dict[str, int]]:
    client = sync_redis()
    prefix = f"tk:{{a:{budget.account_id}}}:b2:{budget.pk}:"
    found = {}
    for key in client.scan_iter(match=prefix + "*"):
        _, _, value = key.decode()[len(prefix):].partition(":")
        found[value] = {k.decode(): int(v) for k, v in client.hgetall(key).items()}
    return found


def spent(budget: Budget, value: str = "") -> int:
    return counters(budget).get(value, {}).get("s", 0)


def reserved(budget: Budget) -> int:
    return sum(fields.get("r", 0) for fields in counters(budget).values())


# --- estimate, reservation, settlement --------------------------------------------------------

def test_settle_replaces_the_estimate_both_ways(priced: Stack) -> None:
    cap = budget(priced, calls=100)
    # Fewer words than max_tokens: the estimate (20 output tokens) was too high.
    shorter = chat(priced, {**CHAT, "max_tokens": 20}, **{"X-Sim-Words": "5"})
    assert Decimal(shorter.headers["x-tokonomics-cost-usd"]) == Decimal("0.005")
    assert counters(cap)[""] == {"s": 5 * 10**6, "r": 0}
    # Reasoning tokens on top of max_tokens: the estimate (5) was too low; the actual cost counts.
    longer = chat(priced, {**CHAT, "max_tokens": 5}, **{"X-Sim-Reasoning-Tokens": "7"})
    assert Decimal(longer.headers["x-tokonomics-cost-usd"]) == Decimal("0.012")
    assert counters(cap)[""] == {"s": 17 * 10**6, "r": 0}


def test_a_call_in_flight_holds_its_estimate_until_it_settles(priced: Stack) -> None:
    cap = budget(priced, calls=100)
    body = {**CHAT, "max_tokens": 20, "stream": True}
    with httpx.stream("POST", f"{priced.proxy}/proxy/openai/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {KEY}", "X-Sim-Hold": "held"}) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        assert _counters(cap)[""] == {"r": 20 * 10**6}
        httpx.post(f"{priced.sim}/_sim/release/held")
        list(lines)
    assert counters(cap)[""] == {"r": 0, "s": 20 * 10**6}


def test_a_soft_budget_never_denies(priced: Stack) -> None:
    soft = budget(priced, calls=1.5, hard=False)
    assert [chat(priced).status_code for _ in range(4)] == [200] * 4
    assert spent(soft) == 4 * CALL * NANOS


# --- scopes -----------------------------------------------------------------------------------

def test_tenant_star_budgets_give_each_tenant_its_own_cap(priced: Stack) -> None:
    each = budget(priced, scope="tenant", match="*", period="day", calls=2)
    globex = [chat(priced, **{"X-Tenant-ID": "globex"}).status_code for _ in range(3)]
    initech = [chat(priced, **{"X-Tenant-ID": "initech"}).status_code for _ in range(2)]
    untagged = [chat(priced).status_code for _ in range(3)]  # in no tenant budget at all
    assert (globex, initech, untagged) == ([200, 200, 429], [200, 200], [200, 200, 200])
    assert {value: fields["s"] for value, fields in counters(each).items()} == {
        "globex": 2 * CALL * NANOS, "initech": 2 * CALL * NANOS}


def test_a_budget_naming_a_tenant_wins_over_star(priced: Stack) -> None:
    budget(priced, scope="tenant", match="*", period="day", calls=1)
    budget(priced, scope="tenant", match="vip", period="day", calls=3)
    vip = [chat(priced, **{"X-Tenant-ID": "vip"}).status_code for _ in range(4)]
    other = [chat(priced, **{"X-Tenant-ID": "other"}).status_code for _ in range(2)]
    assert (vip, other) == ([200, 200, 200, 429], [200, 429])


def test_the_first_burst_of_a_tenant_never_seen_is_capped(priced: Stack) -> None:
    budget(priced, scope="tenant", match="*", period="day", calls=3)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [client.post(f"{priced.proxy}/proxy/openai/chat/completions", json=CHAT,
                                 headers={"Authorization": f"Bearer {KEY}", "X-Tenant-ID": "brand-new"})
                     for _ in range(30)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert Tally(asyncio.run(burst())) == {200: 3, 429: 27}


# --- denials ----------------------------------------------------------------------------------

def _seconds_until(period: str) -> float:
    now = datetime.now(UTC)
    _, end = period_bounds(period, "UTC", now)
    assert end is not None
    return (end - now).total_seconds()


def test_denials_use_the_callers_format_and_the_sdks_raise_rate_limit_errors(priced: Stack) -> None:
    budget(priced, scope="feature", match="support-bot", period="day", calls=0)
    priced.clear_sim()
    client = openai.OpenAI(base_url=f"{priced.proxy}/proxy/openai", api_key=KEY, max_retries=0)
    with pytest.raises(openai.RateLimitError) as denied:
        client.chat.completions.create(**CHAT, extra_headers={"X-Feature-Name": "support-bot"})
    response = denied.value.response
    assert response.json()["error"] == {"message": response.json()["error"]["message"], "type": "budget_exceeded",
                                        "param": None, "code": "feature_budget"}
    assert response.headers["x-tokonomics-denied-scope"] == "feature_budget"
    assert abs(int(response.headers["retry-after"]) - _seconds_until("day")) <= 2

    claude = anthropic.Anthropic(base_url=f"{priced.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(**MESSAGES, extra_headers={"X-Feature-Name": "support-bot"})
    body = refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "budget_exceeded"
    assert priced.sim_requests() == []  # the upstream is never called

    usage_ingest(max_seconds=1)
    records = UsageRecord.objects.filter(status_code=429)
    assert [(r.denied_scope, r.cost_usd or 0, r.input_tokens) for r in records] == [("feature_budget", 0, 0)] * 2


def test_a_budget_denial_records_the_estimate_it_asked_to_reserve(priced: Stack) -> None:
    """Issue 15 §2: the call list explains a denial by the reservation that did not fit."""
    budget(priced, scope="key", match="main", period="day", calls=1.5)
    assert chat(priced).status_code == 200  # $0.01 of $0.015 spent
    assert chat(priced, {**CHAT, "max_tokens": 20}).status_code == 429  # asks for $0.02
    usage_ingest(max_seconds=1)
    ran, denied = UsageRecord.objects.order_by("created_at")
    assert ran.reserved_usd is None
    assert (denied.denied_scope, denied.reserved_usd) == ("key_budget", Decimal("0.02"))


def test_a_total_budget_denies_without_retry_after(priced: Stack) -> None:
    budget(priced, scope="key", match="main", period="total", calls=1)
    assert chat(priced).status_code == 200
    denied = chat(priced)
    assert denied.status_code == 429 and denied.json()["error"]["code"] == "key_budget"
    assert "retry-after" not in denied.headers
    assert denied.headers["x-tokonomics-denied-scope"] == "key_budget"


def test_retry_after_counts_to_the_end_of_the_period_not_the_counters_expiry(priced: Stack) -> None:
    budget(priced, period="month", calls=0)
    denied = chat(priced)
    assert denied.json()["error"]["code"] == "account_budget"
    assert abs(int(denied.headers["retry-after"]) - _seconds_until("month")) <= 2


def test_the_plan_monthly_request_limit(priced: Stack) -> None:
    plan = priced.account.plan
    plan.monthly_request_limit = 3
    plan.save()
    statuses = [chat(priced) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    error = statuses[-1].json()["error"]
    assert (error["type"], error["code"]) == ("plan_limit_exceeded", "plan_request_limit")
    assert statuses[-1].headers["x-tokonomics-denied-scope"] == "plan"
    assert abs(int(statuses[-1].headers["retry-after"]) - _seconds_until("month")) <= 2


def test_expired_keys_get_401_and_disallowed_models_403(priced: Stack) -> None:
    key = priced.key
    key.allowed_models = ["gpt-4o*"]
    key.save()
    proxy_config_seen()
    assert chat(priced).status_code == 200
    refused = chat(priced, {**CHAT, "model": "gpt-3.5-turbo"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    key.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    key.save()
    proxy_config_seen()
    expired = chat(priced)
    assert expired.status_code == 401 and expired.json()["error"]["type"] == "authentication_error"


def test_an_absurd_estimate_is_denied_by_a_hard_budget(priced: Stack) -> None:
    budget(priced, calls=10**6)
    for body in ({**CHAT, "n": 10**9, "max_tokens": 10**12}, {**CHAT, "n": 10**9}, {**CHAT, "max_tokens": 10**19}):
        denied = chat(priced, body)
        assert denied.status_code == 429 and denied.json()["error"]["code"] == "account_budget"
    assert chat(priced).status_code == 200


def test_an_absurd_estimate_under_a_soft_budget_is_reserved_and_settled_like_any_other(priced: Stack) -> None:
    soft = budget(priced, calls=10**9, hard=False)
    costs = Decimal(0)
    # Estimates of $100,000 and more, up to far past what Redis integers hold.
    for body in ({**CHAT, "n": 10, "max_tokens": 10**7}, {**CHAT, "n": 10**9}, {**CHAT, "max_tokens": 10**19}):
        answered = chat(priced, body)
        assert answered.status_code == 200
        costs += Decimal(answered.headers["x-tokonomics-cost-usd"])
    assert counters(soft)[""] == {"s": costs * NANOS, "r": 0}
    usage_ingest(max_seconds=1)
    assert [r.enforced for r in UsageRecord.objects.all()] == [True] * 3  # Redis never refused a script


# --- models without a price (CONTRACT §1: 403 model_unpriced) ----------------------------------

UNPRICED = {**CHAT, "model": "my-own-model-7b"}


def _record(request_id: str) -> UsageRecord:
    """The call's record, once its settle (just after the response) has queued it and the ledger wrote it."""
    deadline = time.monotonic() + 5
    while not (found := UsageRecord.objects.filter(request_id=request_id).first()) and time.monotonic() < deadline:
        usage_ingest(max_seconds=0.5)
    assert found is not None
    return found


def test_a_hard_budget_refuses_a_model_without_a_price(priced: Stack) -> None:
    budget(priced, calls=100)
    priced.clear_sim()
    refused = chat(priced, UNPRICED)
    assert refused.status_code == 403
    assert refused.json()["error"] == {"message": refused.json()["error"]["message"], "type": "permission_error",
                                       "param": None, "code": "model_unpriced"}
    claude = anthropic.Anthropic(base_url=f"{priced.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        claude.messages.create(**{**MESSAGES, "model": "house-model"})
    error = denied.value.body["error"]
    assert (error["type"], error["code"]) == ("permission_error", "model_unpriced")
    assert priced.sim_requests() == []  # the upstream is never called
    usage_ingest(max_seconds=1)
    records = UsageRecord.objects.filter(status_code=403).order_by("created_at")
    assert [(r.model, r.request_id, r.cost_usd, r.input_tokens, r.output_tokens) for r in records] == [
        ("my-own-model-7b", refused.headers["x-tokonomics-request-id"], 0, 0, 0),
        ("house-model", denied.value.response.headers["x-tokonomics-request-id"], 0, 0, 0)]
    # A price of the account's own makes the model priced; the catalogue's models were all along.
    PriceOverride.objects.create(account=priced.account, provider="openai", model="my-own-model-7b",
                                 input_per_mtok=Decimal(0), output_per_mtok=Decimal(1000))
    proxy_config_seen()
    assert chat(priced, UNPRICED).status_code == 200
    assert chat(priced, {**CHAT, "model": "gpt-4o"}).status_code == 200


def test_an_account_may_allow_unpriced_models_under_a_hard_budget(priced: Stack) -> None:
    cap = budget(priced, calls=100)
    priced.account.allow_unpriced_models = True
    priced.account.save()
    proxy_config_seen()
    admitted = chat(priced, UNPRICED)
    assert admitted.status_code == 200 and admitted.headers["x-tokonomics-cost-usd"] == "unknown"
    record = _record(admitted.headers["x-tokonomics-request-id"])
    assert (record.cost_usd, record.status_code) == (None, 200) and record.output_tokens > 0
    # Settled like any other call: a reservation of 0 once made the settle script fail (HINCRBY "-0").
    assert counters(cap)[""] == {"s": 0, "r": 0}


def test_an_unpriced_model_is_refused_only_where_a_hard_budget_covers_the_call(priced: Stack) -> None:
    assert chat(priced, UNPRICED).status_code == 200  # no budget at all
    budget(priced, calls=100, hard=False)
    budget(priced, scope="tenant", match="capped", calls=100)
    proxy_config_seen()
    assert chat(priced, UNPRICED).status_code == 200
    assert chat(priced, UNPRICED, **{"X-Tenant-ID": "free"}).status_code == 200
    refused = chat(priced, UNPRICED, **{"X-Tenant-ID": "capped"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_unpriced"
    last = chat(priced)
    assert last.status_code == 200
    assert _record(refused.headers["x-tokonomics-request-id"]).cost_usd == 0
    _record(last.headers["x-tokonomics-request-id"])
    # Reserving and settling 0 under the soft budget never failed a script (which would trip the breaker).
    assert [r.enforced for r in UsageRecord.objects.all()] == [True] * 5


# --- configuration changes on a live key -----------------------------------------------------

def test_limit_changes_take_effect_on_the_next_call(priced: Stack) -> None:
    cap = budget(priced, calls=2)
    assert [chat(priced).status_code for _ in range(3)] == [200, 200, 429]
    cap.limit_usd = CALL * 4
    cap.save()
    proxy_config_seen()
    assert [chat(priced).status_code for _ in range(3)] == [200, 200, 429]
    cap.limit_usd = CALL * 3
    cap.save()
    proxy_config_seen()
    assert chat(priced).status_code == 429
    assert spent(cap) == 4 * CALL * NANOS


def test_a_changed_period_starts_from_the_periods_recorded_spend(priced: Stack) -> None:
    cap = budget(priced, period="month", calls=10)
    assert [chat(priced).status_code for _ in range(3)] == [200] * 3
    usage_ingest(max_seconds=1)
    cap.period = "day"
    cap.limit_usd = CALL * 5
    cap.save()
    proxy_config_seen()
    # Today already holds 3 calls: two more fit, and no false 429 before that.
    assert [chat(priced).status_code for _ in range(3)] == [200, 200, 429]


def test_a_budget_added_mid_period_counts_what_was_already_spent(priced: Stack) -> None:
    budget(priced, period="month", calls=100)  # the account's counters are seeded from the first call
    assert [chat(priced, **{"X-Feature-Name": "search"}).status_code for _ in range(3)] == [200] * 3
    usage_ingest(max_seconds=1)
    added = budget(priced, scope="feature", match="search", period="month", calls=4)
    proxy_config_seen()
    assert [chat(priced, **{"X-Feature-Name": "search"}).status_code for _ in range(2)] == [200, 429]
    assert spent(added) == 4 * CALL * NANOS


# --- reservations always come back ------------------------------------------------------------

def test_failed_calls_give_their_reservations_back(priced: Stack) -> None:
    from proxy.context import _context

    cap = budget(priced, calls=3.5)
    assert chat(priced, **{"X-Sim-Status": "500"}).status_code == 500
    assert reserved(cap) == 0

    assert _context is not None
    timeout = _context.http._timeout
    _context.http._timeout = timeout.__class__(total=None, connect=5, sock_read=0.3)
    try:
        assert chat(priced, **{"X-Sim-Latency-Ms": "1500"}).status_code == 504
    finally:
        _context.http._timeout = timeout
    assert reserved(cap) == 0

    body = {**CHAT, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}", "X-Sim-Hold": "killed"}
    with httpx.stream("POST", f"{priced.proxy}/proxy/openai/chat/completions", json=body, headers=headers,
                      timeout=10) as response:
        next(line for line in response.iter_lines() if line.startswith("data:"))
    release = threading.Timer(0.3, lambda: httpx.post(f"{priced.sim}/_sim/release/killed"))
    release.start()
    assert reserved(cap) == 0
    # What the failures cost (a little output seen before the kill) leaves room for three calls.
    assert spent(cap) < CALL * NANOS // 2
    assert [chat(priced).status_code for _ in range(3)] == [200, 200, 200]
    release.join()  # while the simulator it calls is still up


def test_scripts_are_reloaded_after_script_flush(priced: Stack) -> None:
    cap = budget(priced, calls=10)
    assert chat(priced).status_code == 200
    sync_redis().script_flush()
    assert chat(priced).status_code == 200
    assert counters(cap)[""] == {"s": 2 * CALL * NANOS, "r": 0}


def test_a_session_star_budget_caps_each_agent_run(priced: Stack) -> None:
    """Issue 19 §3: `session` / '*' worth 3 calls denies a run's 4th call and not the next run's first."""
    each = budget(priced, scope="session", match="*", period="total", calls=3)
    run_1 = [chat(priced, **{"X-Tokonomics-Session": "run-1"}).status_code for _ in range(4)]
    run_2 = [chat(priced, **{"X-Tokonomics-Session": "run-2"}).status_code]
    outside = [chat(priced).status_code for _ in range(4)]  # a call naming no session is in no session budget
    assert (run_1, run_2, outside) == ([200, 200, 200, 429], [200], [200] * 4)
    denied = chat(priced, **{"X-Tokonomics-Session": "run-1"})
    assert denied.json()["error"]["type"] and "session" in denied.text
    assert {value: fields["s"] for value, fields in counters(each).items()} == {
        "run-1": 3 * CALL * NANOS, "run-2": CALL * NANOS}
    usage_ingest(max_seconds=1)
    records = UsageRecord.objects.filter(account=priced.account, session="run-1").order_by("created_at")
    assert [r.denied_scope for r in records] == ["", "", "", "session_budget", "session_budget"]

"""The opt-in response cache, through the live proxy with the official SDKs: an identical call is answered
from the cache (the simulator never sees it), a stream is replayed as a stream, the saving is recorded, and
the rules hold (off by default, one account's answers never reach another, temperature, size cap, TTL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from proxy import metrics
from proxy.response_cache import entry_open, index_key, sizes_key
from tokonomics.redis_client import sync_redis

from ..support import (
    KEY,
    OTHER_KEY,
    SERVERS,
    Stack,
    make_account,
    make_key,
    proxy_config_seen,
    proxy_served_by,
    wait_until,
)

PROMPT = [{"role": "user", "content": "What is a cache?"}]


def cache_on(stack: Stack, **fields: object) -> None:
    account = stack.account
    account.cache_enabled = True
    for name, value in fields.items():
        setattr(account, name, value)
    account.save()
    proxy_config_seen()


@pytest.fixture
def cached(stack: Stack) -> Stack:
    cache_on(stack)
    return stack


def oai(stack: Stack, key: str = KEY, base: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base or stack.proxy}/proxy/openai", api_key=key, max_retries=0)


def claude(stack: Stack, base: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{base or stack.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)


def upstream_calls(stack: Stack) -> int:
    return len(stack.sim_requests())


def records(*request_ids: str) -> list[UsageRecord]:
    def stored() -> bool:
        usage_ingest(max_seconds=0.2)
        return UsageRecord.objects.filter(request_id__in=request_ids).count() == len(request_ids)

    wait_until(stored, message="the usage records were not stored")
    found = {r.request_id: r for r in UsageRecord.objects.filter(request_id__in=request_ids)}
    return [found[request_id] for request_id in request_ids]


def kept(stack: Stack, count: int) -> None:
    """Wait until the account keeps `count` answers: a miss's answer is stored after the client has it."""
    wait_until(lambda: sync_redis().zcard(index_key(stack.account.pk)) >= count, 10,
               message=f"the cache did not keep {count} answers")


def chat_raw(client: openai.OpenAI, **extra: object) -> Any:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": PROMPT, "temperature": 0, "max_tokens": 20, **extra}
    return client.chat.completions.with_raw_response.create(**body)


def test_a_second_identical_call_is_answered_from_the_cache_at_no_cost(cached: Stack) -> None:
    client = oai(cached)
    cached.clear_sim()
    first = chat_raw(client)
    kept(cached, 1)
    second = chat_raw(client)
    assert upstream_calls(cached) == 1  # the second never reached the provider
    assert (first.headers["x-tokonomics-cache"], second.headers["x-tokonomics-cache"]) == ("miss", "hit")
    assert second.parse().model_dump() == first.parse().model_dump()
    assert second.headers["x-tokonomics-cost-usd"] == "0.000000000"
    miss, hit = records(first.headers["x-tokonomics-request-id"], second.headers["x-tokonomics-request-id"])
    assert (miss.cache_hit, miss.cache_saved_usd) == (False, None) and miss.cost_usd > 0
    assert hit.cache_hit and hit.cost_usd == 0 and hit.status_code == 200
    assert hit.cache_saved_usd == miss.cost_usd  # the same usage at the same prices
    assert (hit.input_tokens, hit.output_tokens) == (0, 0)  # no provider processed any


def test_the_saving_reaches_the_rollups_and_the_metrics(cached: Stack) -> None:
    from billing.models import UsageSummaryDayRollup, UsageSummaryRollup

    before = metrics.cache_lookup_series("openai", "hit")._value.get()
    client = oai(cached)
    miss = chat_raw(client)
    kept(cached, 1)
    hit = chat_raw(client)
    _, saved = records(miss.headers["x-tokonomics-request-id"], hit.headers["x-tokonomics-request-id"])
    for model in (UsageSummaryRollup, UsageSummaryDayRollup):
        row = model.objects.get(account=cached.account, model="gpt-4o-mini")
        assert (row.requests, row.cache_hits, row.cache_saved_usd) == (2, 1, saved.cache_saved_usd)
    metrics.flush()
    assert metrics.cache_lookup_series("openai", "hit")._value.get() == before + 1
    assert metrics.cache_saved_series("openai")._value.get() >= float(saved.cache_saved_usd)


def test_the_cache_is_off_by_default(stack: Stack) -> None:
    client = oai(stack)
    stack.clear_sim()
    first, second = chat_raw(client), chat_raw(client)
    assert upstream_calls(stack) == 2
    assert "x-tokonomics-cache" not in first.headers and "x-tokonomics-cache" not in second.headers
    assert not sync_redis().keys("*:rc:*")


@pytest.fixture(params=SERVERS)
def proxy_url(request: pytest.FixtureRequest, cached: Stack) -> Iterator[str]:
    yield from proxy_served_by(request.param, cached.proxy)


def test_a_streamed_hit_is_replayed_as_a_stream_the_sdks_assemble(cached: Stack, proxy_url: str) -> None:
    client = oai(cached, base=proxy_url)
    cached.clear_sim()

    def streamed() -> tuple[str, str, list[str]]:
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=PROMPT, temperature=0, stream=True, stream_options={"include_usage": True},
        ) as response:
            chunks = list(response.parse())
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return response.headers["x-tokonomics-cache"], response.headers["x-tokonomics-request-id"], [
                text, chunks[-1].usage.model_dump_json()]

    first_state, first_id, first = streamed()
    kept(cached, 1)
    second_state, second_id, second = streamed()
    assert (first_state, second_state) == ("miss", "hit") and first == second and first[0]
    assert upstream_calls(cached) == 1
    # Anthropic's SDK assembles a replayed Messages stream too.
    messages = claude(cached, base=proxy_url)
    texts = []
    for count in (1, 2):
        kept(cached, count)
        with messages.messages.stream(model="claude-sonnet-4-5", max_tokens=64, extra_body={"temperature": 0},
                                      messages=PROMPT) as stream:
            texts.append("".join(stream.text_stream))
            final = stream.get_final_message()
            assert final.usage.output_tokens > 0
    assert texts[0] and texts[0] == texts[1]
    assert upstream_calls(cached) == 2
    miss, hit = records(first_id, second_id)
    assert hit.streamed and hit.cache_hit and hit.cache_saved_usd == miss.cost_usd > 0


def test_a_streamed_and_a_plain_call_of_the_same_body_are_different_entries(cached: Stack) -> None:
    client = oai(cached)
    cached.clear_sim()
    chat_raw(client)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, temperature=0, max_tokens=20,
                                        stream=True))
    assert upstream_calls(cached) == 2


def test_a_stream_cut_short_is_not_kept(cached: Stack) -> None:
    body = {"model": "gpt-4o-mini", "messages": PROMPT, "temperature": 0, "stream": True}
    url, auth = f"{cached.proxy}/proxy/openai/chat/completions", {"Authorization": f"Bearer {KEY}"}
    with (httpx.stream("POST", url, json=body, headers={**auth, "X-Sim-Drop-After": "3"}, timeout=10) as response,
          pytest.raises(httpx.RemoteProtocolError)):
        list(response.iter_lines())
    cached.clear_sim()
    with httpx.stream("POST", url, json=body, headers=auth, timeout=10) as response:
        assert response.headers["x-tokonomics-cache"] == "miss"
        assert "data: [DONE]" in list(response.iter_lines())
    assert upstream_calls(cached) == 1


def test_errors_are_not_kept(cached: Stack) -> None:
    client = oai(cached)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, temperature=0,
                                       extra_headers={"X-Sim-Status": "500"})
    assert chat_raw(client).headers["x-tokonomics-cache"] == "miss"


def test_one_accounts_answers_never_reach_another(cached: Stack, plans) -> None:
    other = make_account("globex", cached.sim, plans["pro"])
    other.cache_enabled = True
    other.save()
    make_key(other, OTHER_KEY)
    proxy_config_seen()
    chat_raw(oai(cached))
    kept(cached, 1)
    cached.clear_sim()
    theirs = chat_raw(oai(cached, key=OTHER_KEY))
    assert theirs.headers["x-tokonomics-cache"] == "miss" and upstream_calls(cached) == 1
    wait_until(lambda: sync_redis().zcard(index_key(other.pk)) == 1)
    assert chat_raw(oai(cached, key=OTHER_KEY)).headers["x-tokonomics-cache"] == "hit"


def test_sampled_calls_are_cached_only_when_the_account_says_so(cached: Stack) -> None:
    client = oai(cached)
    sampled = {"model": "gpt-4o-mini", "messages": PROMPT, "temperature": 0.7}
    unset = {"model": "gpt-4o-mini", "messages": PROMPT}  # no temperature: the provider's default, 1
    for body in (sampled, unset):
        for _ in range(2):
            response = client.chat.completions.with_raw_response.create(**body)
            assert "x-tokonomics-cache" not in response.headers
    assert upstream_calls(cached) >= 4 and not sync_redis().zcard(index_key(cached.account.pk))
    cache_on(cached, cache_nonzero_temperature=True)
    assert client.chat.completions.with_raw_response.create(**sampled).headers["x-tokonomics-cache"] == "miss"
    kept(cached, 1)
    assert client.chat.completions.with_raw_response.create(**sampled).headers["x-tokonomics-cache"] == "hit"
    # Embeddings do not sample: cached without the flag.
    cache_on(cached, cache_nonzero_temperature=False)
    embed = {"model": "text-embedding-3-small", "input": "a cache"}
    assert client.embeddings.with_raw_response.create(**embed).headers["x-tokonomics-cache"] == "miss"
    kept(cached, 2)
    assert client.embeddings.with_raw_response.create(**embed).headers["x-tokonomics-cache"] == "hit"


def test_any_change_in_the_request_is_another_entry(cached: Stack) -> None:
    client = oai(cached)
    chat_raw(client)
    kept(cached, 1)
    cached.clear_sim()
    assert chat_raw(client, max_tokens=21).headers["x-tokonomics-cache"] == "miss"
    assert chat_raw(client, model="gpt-4o").headers["x-tokonomics-cache"] == "miss"
    assert chat_raw(client, n=2).headers["x-tokonomics-cache"] == "miss"
    kept(cached, 4)
    assert chat_raw(client, n=2).headers["x-tokonomics-cache"] == "hit"
    assert upstream_calls(cached) == 3


def test_answers_over_the_entry_limit_are_not_kept_and_the_account_cap_evicts_the_oldest(cached: Stack) -> None:
    client = oai(cached)
    cache_on(cached, cache_max_entry_bytes=1024)
    big = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT, temperature=0,
                                                           extra_headers={"X-Sim-Words": "400"})
    assert big.headers["x-tokonomics-cache"] == "miss"
    again = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT, temperature=0,
                                                             extra_headers={"X-Sim-Words": "400"})
    assert again.headers["x-tokonomics-cache"] == "miss"  # too large to keep
    # Room for about two answers: the third evicts the first.
    assert not sync_redis().zcard(index_key(cached.account.pk))
    # A cap with room for two sealed answers (each about 750 bytes): the third evicts the oldest.
    cache_on(cached, cache_max_entry_bytes=1024 * 1024, cache_max_total_bytes=1600)
    for count, tokens in enumerate((1, 2, 3), start=1):
        chat_raw(client, max_tokens=tokens)
        wait_until(lambda count=count: sync_redis().zcard(index_key(cached.account.pk)) == min(count, 2)
                   and sync_redis().hlen(sizes_key(cached.account.pk)) == min(count, 2) + 1)
        time.sleep(0.002)  # a later expiry for each: the oldest goes first
    sizes = sync_redis().hgetall(sizes_key(cached.account.pk))
    assert 0 < int(sizes[b"total"]) <= 1600 and len(sizes) == 3  # two entries and the total
    assert chat_raw(client, max_tokens=3).headers["x-tokonomics-cache"] == "hit"
    assert chat_raw(client, max_tokens=2).headers["x-tokonomics-cache"] == "hit"
    assert chat_raw(client, max_tokens=1).headers["x-tokonomics-cache"] == "miss"  # evicted


def test_an_entry_expires_with_its_ttl(cached: Stack) -> None:
    cache_on(cached, cache_ttl_seconds=1)
    client = oai(cached)
    chat_raw(client)
    kept(cached, 1)
    assert chat_raw(client).headers["x-tokonomics-cache"] == "hit"
    time.sleep(1.05)
    assert chat_raw(client).headers["x-tokonomics-cache"] == "miss"


def test_turning_the_cache_off_removes_its_answers(cached: Stack) -> None:
    from billing.accounts.services import account_cache_update
    from tokonomics.audit import Actor

    chat_raw(oai(cached))
    kept(cached, 1)
    assert sync_redis().keys("*:rc:e:*")
    account_cache_update(account=cached.account, actor=Actor.of_system("tests"), changes={"cache_enabled": False})
    assert not sync_redis().keys("*:rc:*")
    proxy_config_seen()
    assert "x-tokonomics-cache" not in chat_raw(oai(cached)).headers


CANARY = "CANARY-5e1d-never-store-me-in-plain"


def test_kept_answers_are_encrypted_and_named_by_no_content(cached: Stack) -> None:
    client = oai(cached)
    prompt = [{"role": "user", "content": f"Please repeat {CANARY} back to me."}]
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=prompt, temperature=0)
    text = answer.choices[0].message.content or ""
    list(client.chat.completions.create(model="gpt-4o-mini", messages=prompt, temperature=0, stream=True))
    kept(cached, 2)
    redis = sync_redis()
    keys = redis.keys("*")
    entries = redis.keys("*:rc:e:*")
    assert len(entries) == 2
    stored = b"".join([*keys, *(redis.get(k) or b"" for k in keys if redis.type(k) == b"string")])
    # Neither the request (the canary) nor the answer is in Redis in plain; the answer is, sealed.
    assert len(text) > 40 and text.encode() not in stored and CANARY.encode() not in stored
    assert b'"choices"' not in stored and b"data: " not in stored
    opened = [entry_open(cached.account.pk, key.decode().rsplit(":", 1)[1], redis.get(key)) for key in entries]
    assert all(plain is not None for plain in opened) and any(text.encode() in plain for plain in opened)
    # Under another account's key, it opens to nothing.
    assert entry_open(cached.account.pk + 1, entries[0].decode().rsplit(":", 1)[1], redis.get(entries[0])) is None


def test_the_demo_traffic_produces_a_cache_hit_on_first_start(cached: Stack) -> None:
    """bin/run's demotraffic asks its FAQ twice right after its first (routed) calls: with the demo account's
    cache on (demo.yaml), the dashboard shows a saving from the first seconds."""
    import io

    from django.core.management import call_command

    from billing.dashboard.selectors import Range, cells, totals

    errors = io.StringIO()
    call_command("demotraffic", site=cached.proxy, key=KEY, interval=0.3, count=4, stderr=errors)
    assert errors.getvalue() == ""
    usage_ingest(max_seconds=1)
    hits = UsageRecord.objects.filter(cache_hit=True)
    assert hits.count() == 1 and hits.get().cache_saved_usd > 0
    now = datetime.now(UTC)
    sums = totals(cells(cached.account, Range(now - timedelta(hours=1), now + timedelta(minutes=1)), {}))
    assert sums["cache_hits"] == 1 and sums["cache_saved_usd"] == hits.get().cache_saved_usd


def test_a_route_sets_its_own_ttl_and_temperature_rule(cached: Stack) -> None:
    from proxy.models import Route
    from proxy.response_cache import entry_key

    Route.objects.create(account=cached.account, name="support-default", cache_ttl_seconds=2,
                         cache_nonzero_temperature=True, targets=[{"endpoint": "openai", "model": "gpt-4o-mini"}])
    proxy_config_seen()
    client = oai(cached)
    sampled = {"model": "support-default", "messages": PROMPT, "temperature": 0.7}
    first = client.chat.completions.with_raw_response.create(**sampled)
    assert first.headers["x-tokonomics-cache"] == "miss"
    kept(cached, 1)
    name = sync_redis().zrange(index_key(cached.account.pk), 0, -1)[0].decode()
    assert 0 < sync_redis().pttl(entry_key(cached.account.pk, name)) <= 2000  # the route's TTL, not the account's
    cached.clear_sim()
    second = client.chat.completions.with_raw_response.create(**sampled)
    assert second.headers["x-tokonomics-cache"] == "hit" and upstream_calls(cached) == 0
    assert second.parse().model_dump() == first.parse().model_dump()
    # The same sampled call to the model itself is not routed: the account's rule (no sampled calls) holds.
    plain = client.chat.completions.with_raw_response.create(**{**sampled, "model": "gpt-4o-mini"})
    assert "x-tokonomics-cache" not in plain.headers
    miss, hit = records(first.headers["x-tokonomics-request-id"], second.headers["x-tokonomics-request-id"])
    assert hit.cache_hit and hit.cost_usd == 0 and hit.route == "support-default"
    assert hit.cache_saved_usd == miss.cost_usd > 0  # a route's hit saves what the route's answer cost


def test_a_hit_counts_nothing_against_a_budget_and_gives_its_reservation_back(cached: Stack) -> None:
    from billing.models import Budget

    from .test_budgets import counters

    cap = Budget.objects.create(account=cached.account, scope="account", period="month", limit_usd=Decimal(5),
                                hard=True)
    proxy_config_seen()
    client = oai(cached)
    miss = chat_raw(client)
    kept(cached, 1)
    spent = counters(cap)[""]["s"]
    assert spent > 0
    for _ in range(3):
        assert chat_raw(client).headers["x-tokonomics-cache"] == "hit"
    assert counters(cap)[""] == {"s": spent, "r": 0}  # three hits: nothing more spent, nothing left reserved
    assert miss.headers["x-tokonomics-cache"] == "miss"

"""The response cache's rules, without a server: which calls are cached, under which name, and the sealed
entry's round trip."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from proxy.providers import WIRE_FORMATS
from proxy.providers.base import Operation
from proxy.response_cache import (
    CacheCall,
    CacheSettings,
    cache_request,
    entry_decode,
    entry_encode,
    entry_open,
    entry_seal,
    sampling_temperature,
)
from proxy.usage import TokenUsage

SETTINGS = CacheSettings(ttl_seconds=60, max_entry_bytes=1 << 20, max_total_bytes=1 << 24, nonzero_temperature=False)


def _request(body: dict, *, account_id: int = 1, settings: CacheSettings | None = SETTINGS,
             headers: dict[bytes, bytes] | None = None, operation: Operation = Operation.CHAT,
             path: str = "/chat/completions") -> CacheCall | None:
    info = WIRE_FORMATS["openai"].request_info(operation, orjson.dumps(body), path=path)
    return cache_request(settings=settings, account_id=account_id, wire="openai", provider="openai", method="POST",
                         path=path, query=b"", info=info, headers=headers or {})


CHAT = {"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}


def test_the_name_is_the_canonical_request_whatever_the_key_order_or_spacing() -> None:
    one, other = _request(CHAT), _request(dict(reversed(list(CHAT.items()))))
    assert one is not None and other is not None and one.name == other.name and len(one.name) == 64
    assert "hi" not in one.name and "gpt" not in one.name


@pytest.mark.parametrize("change", [{"temperature": 0.0001}, {"max_tokens": 5}, {"n": 2}, {"stream": True},
                                   {"messages": [{"role": "user", "content": "hi!"}]}, {"tools": []}])
def test_any_parameter_changes_the_name(change: dict) -> None:
    settings = CacheSettings(60, 1 << 20, 1 << 24, nonzero_temperature=True)
    assert _request({**CHAT, **change}, settings=settings).name != _request(CHAT, settings=settings).name


def test_accounts_and_answer_changing_headers_have_their_own_names() -> None:
    assert _request(CHAT, account_id=1).name != _request(CHAT, account_id=2).name
    assert _request(CHAT).name != _request(CHAT, headers={b"openai-beta": b"assistants=v2"}).name
    assert _request(CHAT).name == _request(CHAT, headers={b"x-feature-name": b"search"}).name


def test_off_and_sampled_calls_are_not_cached() -> None:
    assert _request(CHAT, settings=None) is None
    assert _request({**CHAT, "temperature": 0.5}) is None
    assert _request({k: v for k, v in CHAT.items() if k != "temperature"}) is None  # the default: 1
    assert _request({**CHAT, "temperature": "0"}) is None  # not a number: treated as unknown
    embeddings = _request({"model": "text-embedding-3-small", "input": "a"}, operation=Operation.EMBEDDINGS,
                          path="/embeddings")
    assert embeddings is not None


def test_gemini_temperature_is_in_its_generation_config() -> None:
    assert sampling_temperature(Operation.GENERATE_CONTENT, {"generationConfig": {"temperature": 0}}) == 0
    assert sampling_temperature(Operation.GENERATE_CONTENT, {"temperature": 0}) is None


def test_an_entry_round_trips_sealed_and_opens_only_for_its_account_and_name() -> None:
    call = _request(CHAT)
    assert call is not None
    call.status, call.content_type = 200, b"text/event-stream"
    for chunk in (b"data: {}\n\n", b"data: [DONE]\n\n"):
        call.record(chunk)
    usage = TokenUsage(input_tokens=10, output_tokens=5, cached_input_tokens=2, reasoning_tokens=1)
    plain = entry_encode(call=call, streamed=True, usage=usage, served_model="gpt-4o-mini-2024-07-18",
                         cost_usd=Decimal("0.000004"))
    answer = entry_decode(plain)
    assert answer is not None and answer.chunks == call.chunks and answer.usage == usage
    assert (answer.status, answer.streamed, answer.cost_usd) == (200, True, Decimal("0.000004"))
    assert call.stream_finished()
    sealed = entry_seal(1, call.name, plain)
    assert b"DONE" not in sealed and entry_open(1, call.name, sealed) == plain
    assert entry_open(2, call.name, sealed) is None and entry_open(1, "0" * 64, sealed) is None


def test_an_answer_over_the_entry_limit_is_dropped_as_it_grows() -> None:
    call = _request(CHAT, settings=CacheSettings(60, max_entry_bytes=10, max_total_bytes=100,
                                                 nonzero_temperature=False))
    assert call is not None
    call.record(b"12345")
    call.record(b"678901")
    assert call.too_large and call.chunks == []


def test_with_redis_unreachable_a_lookup_is_a_miss_and_a_store_is_skipped() -> None:
    import asyncio
    import socket

    from proxy.redis_pipeline import PipelinedRedis
    from proxy.response_cache import cache_get, cache_put

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    call = _request(CHAT)
    assert call is not None
    call.status, call.content_type = 200, b"application/json"
    call.record(b"{}")

    async def both() -> tuple[object, bool]:
        redis = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        try:
            return (await cache_get(redis, call),
                    await cache_put(redis, call, streamed=False, usage=TokenUsage(), served_model="", cost_usd=None,
                                    now_ms=0))
        finally:
            await redis.close()

    assert asyncio.run(both()) == (None, False)


def test_a_damaged_or_foreign_entry_is_a_miss() -> None:
    assert entry_decode(b"") is None and entry_decode(b"\x00\x00\x00\x02{}") is None
    assert entry_open(1, "ab" * 32, b"short") is None

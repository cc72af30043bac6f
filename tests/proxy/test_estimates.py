"""The estimate reserved before a call: output from the request's limit or the model's ceiling,
priced by the settlement's own pricing and never below it for the same token counts; and the input
estimator's error measured against a real tokenizer on a corpus of realistic requests."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from functools import cache

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.admission import estimate, price
from proxy.budgets import usd_to_nanos
from proxy.directory import EndpointEntry
from proxy.gateway import Call
from proxy.pricing import _bundled_providers, catalogue_price_table, default_max_output_tokens
from proxy.providers import WIRE_FORMATS
from proxy.providers.base import Operation, RequestInfo
from proxy.quota import MAX_CALL_NANOS, MAX_CALL_TOKENS
from proxy.usage import TokenUsage

from ..support import account_entry

NOW = datetime.now(UTC)


def make_call(*, wire: str, pricing_provider: str, info: RequestInfo) -> Call:
    call = Call(rid="req_x", started=time.perf_counter(), created_at=NOW.timestamp(), started_at=NOW,
                provider=pricing_provider or "custom", wire=WIRE_FORMATS[wire], info=info)
    call.endpoint = EndpointEntry(slug=call.provider, wire_format=wire, base_url="", pricing_provider=pricing_provider,
                                  credential="")
    call.account = account_entry(1)
    return call


def parsed(wire: str, operation: Operation, payload: dict) -> RequestInfo:
    return WIRE_FORMATS[wire].parse_request(operation, orjson.dumps(payload))


# --- output: the request's limit, else the model's ceiling --------------------------------------

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(("wire", "operation", "payload", "output"), [
    ("openai", Operation.CHAT, {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 77}, 77),
    ("openai", Operation.CHAT, {"model": "gpt-4o-mini", "messages": MESSAGES, "max_completion_tokens": 55,
                                "max_tokens": 9}, 55),
    ("openai", Operation.CHAT, {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 10, "n": 3}, 30),
    ("openai", Operation.RESPONSES, {"model": "gpt-4o-mini", "input": "hello", "max_output_tokens": 66}, 66),
    ("anthropic", Operation.MESSAGES, {"model": "claude-sonnet-4-5", "messages": MESSAGES, "max_tokens": 88}, 88),
    ("openai", Operation.CHAT, {"model": "gpt-4o-mini", "messages": MESSAGES}, default_max_output_tokens(
        "openai", "gpt-4o-mini")),
    ("openai", Operation.EMBEDDINGS, {"model": "text-embedding-3-small", "input": "hello"}, 0),
])
def test_output_is_the_requests_limit_else_the_models_ceiling(wire, operation, payload, output) -> None:
    info = parsed(wire, operation, payload)
    provider = "anthropic" if wire == "anthropic" else "openai"
    nanos, tokens = estimate(make_call(wire=wire, pricing_provider=provider, info=info))
    assert tokens == info.estimated_input_tokens + output
    usage = TokenUsage(input_tokens=info.estimated_input_tokens, output_tokens=output)
    assert nanos == usd_to_nanos(price(make_call(wire=wire, pricing_provider=provider, info=info), usage,
                                       payload["model"]))


CEILING = default_max_output_tokens("openai", "gpt-4o-mini")
PROMPT = "hello"


@pytest.mark.parametrize(("operation", "payload", "output"), [
    # Each of n choices may run to the ceiling: the estimate is n ceilings, as it is n limits.
    (Operation.CHAT, {"messages": MESSAGES, "n": 3}, 3 * CEILING),
    (Operation.CHAT, {"messages": MESSAGES, "n": 3, "max_completion_tokens": 10}, 30),
    (Operation.COMPLETIONS, {"prompt": PROMPT, "n": 2}, 2 * CEILING),
    # best_of candidates are generated (and billed) server-side; n of them are returned.
    (Operation.COMPLETIONS, {"prompt": PROMPT, "best_of": 5, "n": 2}, 5 * CEILING),
    (Operation.COMPLETIONS, {"prompt": PROMPT, "best_of": 4, "max_tokens": 10}, 40),
    (Operation.COMPLETIONS, {"prompt": PROMPT, "best_of": 1, "n": 3, "max_tokens": 10}, 30),
    # Nonsense counts are the provider's to refuse; they never lower the estimate.
    (Operation.CHAT, {"messages": MESSAGES, "n": 0}, CEILING),
    (Operation.CHAT, {"messages": MESSAGES, "n": -4}, CEILING),
    (Operation.CHAT, {"messages": MESSAGES, "n": "3"}, CEILING),
])
def test_every_choice_asked_for_is_reserved(operation, payload, output) -> None:
    info = parsed("openai", operation, {"model": "gpt-4o-mini", **payload})
    nanos, tokens = estimate(make_call(wire="openai", pricing_provider="openai", info=info))
    assert tokens == info.estimated_input_tokens + output
    usage = TokenUsage(input_tokens=info.estimated_input_tokens, output_tokens=output)
    assert nanos == usd_to_nanos(price(make_call(wire="openai", pricing_provider="openai", info=info), usage,
                                       "gpt-4o-mini"))


@pytest.mark.parametrize("payload", [{"n": 10**9}, {"n": 10**9, "max_tokens": 10**12},
                                     {"n": 2**64 - 1, "max_tokens": 2**64 - 1}])
def test_an_absurd_choice_count_gives_a_huge_estimate_not_an_error(payload) -> None:
    info = parsed("openai", Operation.CHAT, {"model": "gpt-5", "messages": MESSAGES, **payload})
    nanos, tokens = estimate(make_call(wire="openai", pricing_provider="openai", info=info))
    assert tokens == info.estimated_input_tokens + MAX_CALL_TOKENS
    assert nanos == usd_to_nanos(price(make_call(wire="openai", pricing_provider="openai", info=info), TokenUsage(
        input_tokens=info.estimated_input_tokens, output_tokens=MAX_CALL_TOKENS), "gpt-5"))
    assert nanos >= MAX_CALL_NANOS  # past what quota reserves: a hard budget under $1,000,000 denies it


def test_the_default_ceiling_is_the_models_published_maximum() -> None:
    assert default_max_output_tokens("openai", "gpt-4o-mini") == 16_384
    assert default_max_output_tokens("anthropic", "claude-sonnet-4-5") == 64_000
    assert default_max_output_tokens(None, "my-own-model-7b") == 4_096


def test_an_unknown_price_reserves_nothing_but_still_counts_tokens() -> None:
    info = parsed("openai", Operation.CHAT, {"model": "my-own-model-7b", "messages": MESSAGES, "max_tokens": 5})
    assert estimate(make_call(wire="openai", pricing_provider="", info=info)) == (0, info.estimated_input_tokens + 5)


# --- property: the estimate never prices the same counts below the settlement ----------------

@cache
def priced_models() -> list[tuple[str, str]]:
    return sorted(
        (provider.id, model.id)
        for provider in _bundled_providers()
        for model in provider.models
        if catalogue_price_table(provider_id=provider.id, base_url=None, model=model.id, at=NOW) is not None
    )


@st.composite
def calls_and_usage(draw: st.DrawFn) -> tuple[Call, TokenUsage]:
    provider, model = draw(st.sampled_from(priced_models()))
    wire = draw(st.sampled_from(("openai", "anthropic")))
    total_in = draw(st.integers(0, 400_000))
    output = draw(st.integers(0, 130_000))
    cached = draw(st.integers(0, total_in))
    # Anthropic writes a cache only where the request asks (cache_control), at 1 hour only when it says so.
    asks_cache, one_hour = draw(st.booleans()), draw(st.booleans())
    may_write = wire == "openai" or asks_cache
    written = draw(st.integers(0, total_in - cached)) if may_write else 0
    written_1h = draw(st.integers(0, written)) if one_hour else 0
    reasoning = draw(st.integers(0, output))
    body = b'{"messages":[{"content":[{"type":"text","text":"x"'
    body += b',"cache_control":{"type":"ephemeral"' if asks_cache else b""
    body += b',"ttl":"1h"' if one_hour else b""
    info = RequestInfo(operation=Operation.MESSAGES if wire == "anthropic" else Operation.CHAT, model=model,
                       stream=False, max_output_tokens=output, estimated_input_tokens=total_in, body=body)
    usage = TokenUsage(input_tokens=total_in, output_tokens=output, cached_input_tokens=cached,
                       cache_write_tokens=written, cache_write_1h_tokens=written_1h, reasoning_tokens=reasoning)
    return make_call(wire=wire, pricing_provider=provider, info=info), usage


@settings(max_examples=500, deadline=None)
@given(calls_and_usage())
def test_the_estimate_is_never_below_the_settlement_of_the_same_counts(case: tuple[Call, TokenUsage]) -> None:
    call, usage = case
    assert call.info is not None
    settled = price(call, usage, call.info.model)
    reserved, _ = estimate(call)
    assert settled is not None and reserved >= usd_to_nanos(settled)


# --- the input estimator against a real tokenizer ---------------------------------------------

SYSTEM = ("You are a meticulous support assistant for Acme Inc. Answer in the customer's language, cite the "
          "order number when one is given, and never promise refunds above the policy limit of $200.")
CODE = '''def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping closed intervals."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
'''
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
CORPUS: dict[str, list[dict]] = {
    "short question": [{"role": "user", "content": "What is the capital of Australia?"}],
    "system + question": [{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": "My order #A-1043 arrived broken. What can you do?"}],
    "multi-turn": [{"role": "system", "content": SYSTEM},
                   {"role": "user", "content": "Hi, I ordered a kettle last week and it still has not shipped."},
                   {"role": "assistant", "content": "I'm sorry about the delay. Could you give me the order number?"},
                   {"role": "user", "content": "Sure, it's A-2291. I paid for express delivery, too."},
                   {"role": "assistant", "content": "Thanks. Order A-2291 is packed and leaves today; express "
                                                    "shipping will be refunded because it missed the window."},
                   {"role": "user", "content": "Great, and when will the refund show up on my card?"}],
    "code review": [{"role": "system", "content": "You review Python code for bugs and style."},
                    {"role": "user", "content": "Please review this:\n\n```python\n" + CODE + "```"}],
    "German": [{"role": "user", "content": "Können Sie mir bitte erklären, wie die Rückerstattung für eine "
                                           "beschädigte Lieferung funktioniert? Ich habe die Bestellung gestern "
                                           "erhalten und der Wasserkocher war zerbrochen."}],
    "Japanese": [{"role": "user", "content": "昨日届いた電気ケトルが壊れていました。返品と返金の手続きを"
                                             "教えてください。注文番号はA-1043です。"}],
    "Chinese": [{"role": "user", "content": "请帮我总结一下这份季度财务报告的要点，重点关注收入增长和成本控制。"}],
    "Russian": [{"role": "user", "content": "Подскажите, пожалуйста, как оформить возврат товара, если "
                                            "посылка пришла повреждённой?"}],
    "JSON data": [{"role": "user", "content": "Summarise: " + orjson.dumps(
        [{"id": i, "status": "shipped" if i % 2 else "pending", "total": i * 13.5} for i in range(25)]).decode()}],
}
TOOL_CASES = {"tools": ([{"role": "user", "content": "Is it raining in Lyon right now?"}], [WEATHER_TOOL])}


def cookbook_tokens(encode, messages: list[dict], tools: list[dict] | None = None) -> int:
    """OpenAI's own recipe for a chat request's prompt_tokens (openai-cookbook, "How to count tokens
    with tiktoken", gpt-4o family constants), which OpenAI documents as matching the API."""
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        total += 3 + len(encode(message["role"])) + len(encode(message["content"]))
    for tool in tools or []:
        function = tool["function"]
        total += 7 + len(encode(f"{function['name']}:{function['description']}"))
        properties = function["parameters"]["properties"]
        if properties:
            total += 3
            for name, field in properties.items():
                total += 3 + len(encode(f"{name}:{field['type']}:{field.get('description', '')}"))
                if "enum" in field:
                    total += -3 + sum(3 + len(encode(item)) for item in field["enum"])
        total += 12
    return total


def test_the_input_estimate_against_the_o200k_tokenizer() -> None:
    """Prints the table README quotes (pytest -s). The estimate is ceil(UTF-8 bytes / 4) plus framing:
    it overestimates English and code a little and CJK text a lot (safe for a reservation), and may
    underestimate tool definitions, which OpenAI renders more verbosely than their JSON."""
    bpe = pytest.importorskip("bpe_openai", reason="bpe-openai bundles the o200k vocabulary; tiktoken downloads it")
    encode = bpe.get_encoding("o200k_base").encode
    errors: dict[str, float] = {}
    for name, messages in CORPUS.items():
        info = parsed("openai", Operation.CHAT, {"model": "gpt-4o", "messages": messages})
        errors[name] = info.estimated_input_tokens / cookbook_tokens(encode, messages) - 1
    for name, (messages, tools) in TOOL_CASES.items():
        info = parsed("openai", Operation.CHAT, {"model": "gpt-4o", "messages": messages, "tools": tools})
        errors[name] = info.estimated_input_tokens / cookbook_tokens(encode, messages, tools) - 1
    for name, error in errors.items():
        print(f"{name:20} {error:+.0%}")
    print(f"{'median':20} {statistics.median(errors.values()):+.0%}")
    assert all(-0.35 <= error <= 1.5 for error in errors.values()), errors
    assert statistics.median(errors.values()) >= 0  # a reservation should not usually be short

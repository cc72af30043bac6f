"""Real providers' recorded answers (tests/fixtures/sse/, replayed by the simulator's X-Sim-Fixture), translated
to the other format and read by that format's official SDK: what the SDK reads must be what the recording
says — text, stop reason, usage — whatever the provider (OpenAI, DeepSeek's reasoner, Groq, Mistral, Together,
Fireworks, OpenRouter, Perplexity; Anthropic with caches and restated usage). The recorded streams are also fed
a byte at a time and cut at random places: the translation must not change."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from proxy.providers.base import sse_json_object
from proxy.providers.openai import chat_usage
from proxy.simulator.sse import split_events
from proxy.translate.completion_to_message import ChatToMessagesStream, stop_reason
from proxy.translate.message_to_completion import FINISH_REASONS, MessagesToChatStream

from .test_sdk_golden import claude, oai, servers  # noqa: F401 - fixtures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sse"
CHAT_STREAMS = sorted(p.name for p in FIXTURES.glob("*.sse") if not p.name.startswith(("anthropic", "openai_resp")))
CHAT_BODIES = sorted(p.name for p in FIXTURES.glob("*.json") if "chat" in p.name)
MESSAGES_STREAMS = sorted(p.name for p in FIXTURES.glob("anthropic_messages*.sse"))
MESSAGES_BODIES = sorted(p.name for p in FIXTURES.glob("anthropic_messages*.json"))
QUESTION = [{"role": "user", "content": "Hello"}]


def chat_stream_facts(name: str) -> tuple[str, list[tuple[str, Any]], str | None, dict[str, Any]]:
    """(text, tool calls as (name, arguments), finish reason, usage) as the recorded chat stream says them."""
    text, calls, finish, usage = "", {}, None, {}
    for event in split_events((FIXTURES / name).read_bytes()):
        chunk = sse_json_object(event) or {}
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                named, arguments = calls.get(call["index"], ("", ""))
                function = call.get("function") or {}
                arguments += function.get("arguments") or ""
                calls[call["index"]] = (named or function.get("name", ""), arguments)
            finish = choice.get("finish_reason") or finish
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage") or usage
    return text, [(named, orjson.loads(arguments)) for named, arguments in calls.values()], finish, usage


def messages_stream_facts(name: str) -> tuple[str, str | None, dict[str, Any]]:
    text, stop, usage = "", None, {}
    for event in split_events((FIXTURES / name).read_bytes()):
        payload = sse_json_object(event) or {}
        if payload.get("type") == "message_start":
            usage = dict(payload["message"]["usage"])
        elif payload.get("type") == "content_block_delta" and payload["delta"]["type"] == "text_delta":
            text += payload["delta"]["text"]
        elif payload.get("type") == "message_delta":
            stop = payload["delta"]["stop_reason"]
            usage.update((k, v) for k, v in payload["usage"].items() if v is not None)
    return text, stop, usage


@pytest.mark.parametrize("name", CHAT_STREAMS)
def test_anthropic_sdk_reads_a_recorded_chat_stream(claude: anthropic.Anthropic, name: str) -> None:  # noqa: F811
    text, calls, finish, usage = chat_stream_facts(name)
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=QUESTION,
                                extra_headers={"X-Sim-Fixture": name}) as stream:
        streamed = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert streamed == text and (text or calls)
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == calls
    assert message.stop_reason == stop_reason(finish)
    # As the proxy meters it (providers/openai.py chat_usage: DeepSeek's cache hits, Perplexity's reasoning).
    expected = chat_usage(usage)
    assert message.usage.output_tokens == expected.output_tokens > 0
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == expected.input_tokens
    assert (message.usage.cache_read_input_tokens or 0) == expected.cached_input_tokens


@pytest.mark.parametrize("name", CHAT_BODIES)
def test_anthropic_sdk_reads_a_recorded_chat_completion(claude: anthropic.Anthropic, name: str) -> None:  # noqa: F811
    recorded = orjson.loads((FIXTURES / name).read_bytes())
    message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=QUESTION,
                                     extra_headers={"X-Sim-Fixture": name})
    choice = recorded["choices"][0]
    texts = [b.text for b in message.content if b.type == "text"]
    assert texts == ([choice["message"]["content"]] if choice["message"]["content"] else [])
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == [
        (c["function"]["name"], orjson.loads(c["function"]["arguments"])) for c in choice["message"].get(
            "tool_calls") or []]
    assert message.stop_reason == stop_reason(choice["finish_reason"]) and message.model == recorded["model"]
    assert message.usage.output_tokens == chat_usage(recorded["usage"]).output_tokens


@pytest.mark.parametrize("name", MESSAGES_STREAMS)
def test_openai_sdk_reads_a_recorded_messages_stream(oai: openai.OpenAI, name: str) -> None:  # noqa: F811
    text, stop, usage = messages_stream_facts(name)
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True,
                                              stream_options={"include_usage": True},
                                              extra_headers={"X-Sim-Fixture": name}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text and text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        FINISH_REASONS[stop]]
    final = chunks[-1].usage
    assert final is not None and final.prompt_tokens_details is not None
    assert final.completion_tokens == usage["output_tokens"]
    assert final.prompt_tokens == sum(usage.get(k) or 0 for k in (
        "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    assert final.prompt_tokens_details.cached_tokens == (usage.get("cache_read_input_tokens") or 0)


@pytest.mark.parametrize("name", MESSAGES_BODIES)
def test_openai_sdk_reads_a_recorded_message(oai: openai.OpenAI, name: str) -> None:  # noqa: F811
    recorded = orjson.loads((FIXTURES / name).read_bytes())
    completion = oai.chat.completions.create(model="gpt-4o", messages=QUESTION,
                                             extra_headers={"X-Sim-Fixture": name})
    texts = "".join(b["text"] for b in recorded["content"] if b["type"] == "text")
    assert completion.choices[0].message.content == texts and completion.model == recorded["model"]
    assert completion.choices[0].finish_reason == FINISH_REASONS[recorded["stop_reason"]]
    assert completion.usage is not None and completion.usage.completion_tokens == recorded["usage"]["output_tokens"]


@pytest.mark.parametrize("name", CHAT_STREAMS + MESSAGES_STREAMS)
def test_a_recorded_stream_translates_alike_whatever_its_chunks(name: str) -> None:
    recording = (FIXTURES / name).read_bytes()

    def translator() -> ChatToMessagesStream | MessagesToChatStream:
        if name.startswith("anthropic"):
            return MessagesToChatStream(include_usage=True, created=1)
        return ChatToMessagesStream()

    whole = translator()
    expected = whole.feed(recording) + whole.close()
    one_by_one = translator()
    assert b"".join(one_by_one.feed(recording[i:i + 1]) for i in range(len(recording))) + one_by_one.close() \
        == expected
    cuts = random.Random(name)
    for _ in range(30):
        points = sorted(cuts.sample(range(len(recording) + 1), 3))
        t = translator()
        pieces = [recording[a:b] for a, b in zip([0, *points], [*points, len(recording)], strict=True)]
        assert b"".join(t.feed(piece) for piece in pieces) + t.close() == expected, points

"""Cross-format fallback through the live proxy with the official SDKs: an OpenAI chat call served by a Claude
model when the OpenAI target fails, an Anthropic Messages call served by GPT when Claude fails, streamed and
not; the record meters the target's own usage (Anthropic's cache writes, OpenAI's cached prompt) and names the
target that served; a request the target cannot serve faithfully skips it; errors reach the client in its
format. The translation itself is tested in tests/translate/."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from proxy.simulator.content import reply_text

from ..support import Stack
from .test_routing import MESSAGES, anthropic_client, openai_client, record, route

CLAUDE = "claude-3-5-haiku-20241022"
GPT = "gpt-4o-mini"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def claude_fallback(stack: Stack) -> None:
    route(stack, "chat-default", [{"endpoint": "openai", "model": "gpt-4o"},
                                  {"endpoint": "anthropic", "model": CLAUDE}], retries=0)


def gpt_fallback(stack: Stack) -> None:
    route(stack, "claude-default", [{"endpoint": "anthropic", "model": "claude-sonnet-4-5-20250929"},
                                    {"endpoint": "openai", "model": GPT}], retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_an_openai_call_falls_back_to_claude(stack: Stack, stream: bool) -> None:
    claude_fallback(stack)
    client = openai_client(stack.proxy)
    sim = {"X-Sim-Status": "503", "X-Sim-Fail-Model": "gpt-4o", "X-Sim-Words": "6",
           "X-Sim-Cache-Write-Tokens": "40", "X-Sim-Cached-Tokens": "30"}
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model="chat-default", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
            extra_headers=sim)
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
        usage, model = chunks[-1].usage, chunks[0].model
    else:
        raw = client.chat.completions.with_raw_response.create(model="chat-default", messages=MESSAGES,
                                                               extra_headers=sim)
        completion = raw.parse()
        text, finish = completion.choices[0].message.content, completion.choices[0].finish_reason
        usage, model = completion.usage, completion.model
        assert float(raw.headers["x-tokonomics-cost-usd"]) > 0
    assert text == reply_text(6) and finish == "stop" and model == CLAUDE
    assert usage is not None and usage.prompt_tokens_details is not None
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert [(a["target"], a["outcome"]) for a in saved.attempts] == [("openai/gpt-4o", "503"),
                                                                       (f"anthropic/{CLAUDE}", "ok")]
    assert (saved.provider, saved.model, saved.served_model) == ("anthropic", CLAUDE, CLAUDE)
    assert (saved.status_code, saved.streamed, saved.operation, saved.usage_source) == (200, stream, "chat",
                                                                                        "reported")
    # Anthropic's own usage, cache writes included (OpenAI's format has no field for them).
    assert saved.cache_write_tokens == 40 and saved.cached_input_tokens == 30
    assert (saved.input_tokens, saved.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert saved.cost_usd > 0


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_call_falls_back_to_gpt(stack: Stack, stream: bool) -> None:
    gpt_fallback(stack)
    client = anthropic_client(stack.proxy)
    sim = {"X-Sim-Status": "529", "X-Sim-Fail-Model": "claude-sonnet-4-5-20250929", "X-Sim-Words": "5",
           "X-Sim-Cached-Tokens": "20"}
    if stream:
        raw = client.messages.with_raw_response.create(model="claude-default", max_tokens=64, messages=MESSAGES,
                                                       stream=True, extra_headers=sim)
        events = list(raw.parse())
        text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
        [delta] = [e for e in events if e.type == "message_delta"]
        stop, usage = delta.delta.stop_reason, delta.usage
        assert events[0].type == "message_start" and events[0].message.model == GPT
        input_tokens = (usage.input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    else:
        raw = client.messages.with_raw_response.create(model="claude-default", max_tokens=64, messages=MESSAGES,
                                                       extra_headers=sim)
        message = raw.parse()
        assert message.model == GPT and message.content[0].type == "text"
        text, stop, usage = message.content[0].text, message.stop_reason, message.usage
        input_tokens = usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert text == reply_text(5) and stop == "end_turn"
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert [(a["target"], a["outcome"]) for a in saved.attempts] == [
        ("anthropic/claude-sonnet-4-5-20250929", "529"), (f"openai/{GPT}", "ok")]
    assert (saved.provider, saved.model, saved.served_model, saved.streamed) == ("openai", GPT, GPT, stream)
    assert saved.cached_input_tokens == 20 and saved.input_tokens == input_tokens
    assert saved.output_tokens == usage.output_tokens == 5 and saved.cost_usd > 0


def test_tool_calls_and_results_cross_formats_through_the_proxy(stack: Stack) -> None:
    gpt_fallback(stack)
    client = anthropic_client(stack.proxy)
    failing = {"X-Sim-Status": "503", "X-Sim-Fail-Model": "claude-sonnet-4-5-20250929"}
    tools = [{"name": "get_weather", "input_schema": WEATHER}]
    first = client.messages.create(model="claude-default", max_tokens=64, messages=MESSAGES,
                                   tools=tools, extra_headers=failing)
    [use] = first.content
    assert first.stop_reason == "tool_use" and use.type == "tool_use" and use.input == {"city": "sample"}
    answer = client.messages.create(
        model="claude-default", max_tokens=64, tools=tools, extra_headers={**failing, "X-Sim-Words": "3"},
        messages=[*MESSAGES, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}])
    assert answer.stop_reason == "end_turn" and answer.content[0].text == reply_text(3)


def test_a_request_claude_cannot_serve_faithfully_skips_it(stack: Stack) -> None:
    route(stack, "chat-default", [{"endpoint": "anthropic", "model": CLAUDE},
                                  {"endpoint": "openai", "model": GPT}], retries=0)
    raw = openai_client(stack.proxy).chat.completions.with_raw_response.create(
        model="chat-default", messages=MESSAGES, max_tokens=8, logprobs=True)
    assert raw.parse().model == GPT
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert [(a["target"], a["outcome"]) for a in saved.attempts] == [
        (f"anthropic/{CLAUDE}", "untranslatable"), (f"openai/{GPT}", "ok")]
    assert saved.provider == "openai"


def test_the_last_targets_error_reaches_the_client_in_its_own_format(stack: Stack) -> None:
    route(stack, "chat-default", [{"endpoint": "anthropic", "model": CLAUDE}], retries=0)
    client = openai_client(stack.proxy)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="chat-default", messages=MESSAGES, max_tokens=8,
                                       extra_headers={"X-Sim-Status": "429", "X-Sim-Retry-After": "7"})
    body = json.loads(limited.value.response.content)
    assert body["error"]["type"] == "requests" and body["error"]["message"]
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.BadRequestError) as refused:  # not retryable: relayed, translated
        client.chat.completions.create(model="chat-default", messages=MESSAGES, max_tokens=8,
                                       extra_headers={"X-Sim-Status": "400"})
    assert json.loads(refused.value.response.content)["error"]["type"] == "invalid_request_error"
    saved = record(refused.value.response.headers["x-tokonomics-request-id"])
    assert saved.status_code == 400 and saved.cost_usd == 0


def test_an_anthropic_client_gets_gpts_error_as_anthropics(stack: Stack) -> None:
    route(stack, "claude-default", [{"endpoint": "openai", "model": GPT}], retries=0)
    with pytest.raises(anthropic.InternalServerError) as failed:
        anthropic_client(stack.proxy).messages.create(model="claude-default", max_tokens=8, messages=MESSAGES,
                                                      extra_headers={"X-Sim-Status": "503"})
    assert failed.value.status_code == 503
    assert json.loads(failed.value.response.content)["error"]["type"] == "overloaded_error"


def test_a_stream_that_asked_no_usage_gets_none_and_is_still_metered(stack: Stack) -> None:
    claude_fallback(stack)
    raw = openai_client(stack.proxy).chat.completions.with_raw_response.create(
        model="chat-default", messages=MESSAGES, stream=True,
        extra_headers={"X-Sim-Status": "503", "X-Sim-Fail-Model": "gpt-4o", "X-Sim-Words": "4"})
    chunks = list(raw.parse())
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply_text(4)
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert (saved.provider, saved.output_tokens, saved.usage_source) == ("anthropic", 4, "reported")
    assert saved.input_tokens > 0 and saved.cost_usd > 0


def test_a_success_that_cannot_be_translated_becomes_a_502_in_the_clients_format() -> None:
    from types import SimpleNamespace

    from proxy.providers import WIRE_FORMATS
    from proxy.providers.base import Operation
    from proxy.relay import translated_body
    from proxy.translate import ChatViaMessages

    client_info = WIRE_FORMATS["openai"].parse_request(Operation.CHAT, b'{"model":"r","messages":[]}')
    translation = ChatViaMessages().prepare(client_info, model=CLAUDE)
    call = SimpleNamespace(wire=WIRE_FORMATS["openai"])
    status, body = translated_body(call, translation, 200, b"<html>oops</html>")
    assert status == 502 and json.loads(body)["error"]["code"] == "untranslatable_answer"
    status, body = translated_body(call, translation, 529, b'{"type":"error","error":{"type":"overloaded_error",'
                                                           b'"message":"Overloaded"}}')
    assert status == 503 and json.loads(body)["error"]["message"] == "Overloaded"

"""Golden tests with the official SDKs on the client side: a small translating server (aiohttp, here)
takes the SDK's request in format A, sends its translation to the simulator in format B, and answers
with the simulator's answer translated back to A — body, stream or error. The SDK of format A must parse
it, and what it reads (text, tool calls, finish / stop reasons, usage) must be the simulator's own answer.

No database, no proxy: the proxy's wiring is tested in tests/proxy/test_cross_format_routes.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import anthropic
import httpx
import openai
import orjson
import pytest
from aiohttp import web

from proxy.providers import WIRE_FORMATS
from proxy.providers.base import Operation
from proxy.simulator import SimulatorThread
from proxy.simulator.content import reply_text
from proxy.translate import FormatAdapter, adapter_for

CLAUDE = "claude-3-5-haiku-20241022"
GPT = "gpt-4o-mini"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string",
           "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}
ARGUMENTS = {"city": "sample", "unit": "celsius"}  # the simulator's instance of WEATHER
OPENAI_TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
ANTHROPIC_TOOLS: Any = [{"name": "get_weather", "input_schema": WEATHER}]
CANNED = "X-Test-Canned-Upstream"  # the translating server answers with this canned upstream stream instead

ANTHROPIC_STREAM_WITH_ERROR = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)
OPENAI_STREAM_WITH_ERROR = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
    b'data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}\n\n'
)
CANNED_STREAMS = {"anthropic-error": ANTHROPIC_STREAM_WITH_ERROR, "openai-error": OPENAI_STREAM_WITH_ERROR}


def translating_app(sim_url: str) -> web.Application:
    async def serve(request: web.Request, adapter: FormatAdapter, target_model: str) -> web.StreamResponse:
        body = await request.read()
        client_info = WIRE_FORMATS[adapter.client_format].parse_request(
            Operation.CHAT if adapter.client_format == "openai" else Operation.MESSAGES, body)
        translated = adapter.request(client_info.body, model=target_model)
        headers = adapter.upstream_headers({k: v for k, v in request.headers.items() if k.lower().startswith("x-sim")})
        if canned := request.headers.get(CANNED):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            translator = adapter.stream_translator(client_info=client_info)
            await response.write(translator.feed(CANNED_STREAMS[canned]) + translator.close())
            return response
        async with aiohttp.ClientSession() as session, session.post(
            # Endpoints' base URLs: OpenAI's ends in /v1, Anthropic's does not (proxy/catalog.py).
            sim_url + ("/v1" if adapter.target_format == "openai" else "") + adapter.target_path, data=translated,
            headers={**headers, "Content-Type": "application/json", "Authorization": "Bearer sk-sim",
                     "x-api-key": "sk-sim"},
        ) as upstream:
            if upstream.status >= 400:
                status, error = adapter.error(upstream.status, await upstream.read())
                return web.Response(status=status, body=error, content_type="application/json")
            if upstream.content_type != "text/event-stream":
                return web.Response(body=adapter.response(await upstream.read()), content_type="application/json")
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            translator = adapter.stream_translator(client_info=client_info)
            async for chunk in upstream.content.iter_any():
                if out := translator.feed(chunk):
                    await response.write(out)
            await response.write(translator.close())
            return response

    async def chat(request: web.Request) -> web.StreamResponse:
        adapter = adapter_for("openai", "anthropic", Operation.CHAT)
        assert adapter is not None
        return await serve(request, adapter, CLAUDE)

    async def messages(request: web.Request) -> web.StreamResponse:
        adapter = adapter_for("anthropic", "openai", Operation.MESSAGES)
        assert adapter is not None
        return await serve(request, adapter, GPT)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    return app


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """(simulator URL, translating server URL)."""
    with SimulatorThread(port=0) as sim:
        translating = SimulatorThread(port=0)
        translating.app = translating_app(sim.base_url)  # the thread serves whatever app it is given
        with translating:
            yield sim.base_url, translating.base_url


@pytest.fixture
def oai(servers: tuple[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=servers[1] + "/v1", api_key="sk-test", max_retries=0)


@pytest.fixture
def claude(servers: tuple[str, str]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=servers[1], api_key="sk-test", max_retries=0)


def native(servers: tuple[str, str], path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    """The simulator's own answer to the translated request (what the translation must carry)."""
    answer = httpx.post(servers[0] + path, json=body, headers={"x-api-key": "k", "Authorization": "Bearer k",
                                                              "anthropic-version": "2023-06-01", **headers})
    return dict(answer.json())


def as_messages(body: dict[str, Any], model: str = CLAUDE) -> dict[str, Any]:
    adapter = adapter_for("openai", "anthropic", Operation.CHAT)
    assert adapter is not None
    return dict(orjson.loads(adapter.request(orjson.dumps(body), model=model)))


def as_chat(body: dict[str, Any], model: str = GPT) -> dict[str, Any]:
    adapter = adapter_for("anthropic", "openai", Operation.MESSAGES)
    assert adapter is not None
    return dict(orjson.loads(adapter.request(orjson.dumps(body), model=model)))


# --- an OpenAI client served by Claude -----------------------------------------------------------------

QUESTION = {"role": "user", "content": "Is it raining in Lyon?"}


def test_openai_sdk_reads_claudes_answer(oai: openai.OpenAI, servers: tuple[str, str]) -> None:
    request: Any = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."}, QUESTION]}
    sim = {"X-Sim-Words": "9", "X-Sim-Cached-Tokens": "100", "X-Sim-Cache-Write-Tokens": "20"}
    completion = oai.chat.completions.create(**request, extra_headers=sim)
    expected = native(servers, "/v1/messages", as_messages(request), **sim)["usage"]
    choice = completion.choices[0]
    assert choice.message.content == reply_text(9) and choice.finish_reason == "stop"
    assert completion.model == CLAUDE and completion.object == "chat.completion"
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens == expected["input_tokens"] + 120
    assert completion.usage.prompt_tokens_details.cached_tokens == 100
    assert completion.usage.completion_tokens == 9 == expected["output_tokens"]


def test_openai_sdk_reads_length_when_claude_hits_max_tokens(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o", messages=[QUESTION], max_tokens=3,
                                             extra_headers={"X-Sim-Words": "10"})
    assert completion.choices[0].finish_reason == "length" and completion.choices[0].message.content == reply_text(3)


def test_openai_sdk_tool_call_and_result_round_trip_through_claude(oai: openai.OpenAI) -> None:
    first = oai.chat.completions.create(model="gpt-4o", messages=[QUESTION], tools=OPENAI_TOOLS,
                                        tool_choice="required")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("toolu_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == ARGUMENTS
    answer = oai.chat.completions.create(model="gpt-4o", tools=OPENAI_TOOLS, extra_headers={"X-Sim-Words": "4"},
                                         messages=[QUESTION, choice.message.model_dump(exclude_none=True),
                                                   {"role": "tool", "tool_call_id": call.id, "content": "dry"}])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content == reply_text(4)
    assert not answer.choices[0].message.tool_calls


def test_openai_sdk_streams_claudes_answer_with_usage(oai: openai.OpenAI, servers: tuple[str, str]) -> None:
    request: Any = {"model": "gpt-4o", "messages": [QUESTION]}
    stream = oai.chat.completions.create(**request, stream=True, stream_options={"include_usage": True},
                                         extra_headers={"X-Sim-Words": "12"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    expected = native(servers, "/v1/messages", as_messages(request), **{"X-Sim-Words": "12"})["usage"]
    assert text == reply_text(12) and finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (expected["input_tokens"], 12)
    assert all(c.model == CLAUDE for c in chunks)


def test_openai_sdk_stream_without_include_usage_gets_no_usage_chunk(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=[QUESTION], stream=True,
                                              extra_headers={"X-Sim-Words": "3"}))
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply_text(3)


def test_openai_sdk_streams_claudes_tool_call_as_argument_deltas(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=[QUESTION], tools=OPENAI_TOOLS, stream=True))
    calls = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert calls[0].function is not None and calls[0].function.name == "get_weather" and calls[0].id
    assert len(calls) > 2 and {d.index for d in calls} == {0}
    assert json.loads("".join(d.function.arguments or "" for d in calls if d.function)) == ARGUMENTS
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize(("status", "error", "client_status"), [
    (400, openai.BadRequestError, 400), (401, openai.AuthenticationError, 401), (429, openai.RateLimitError, 429),
    (500, openai.InternalServerError, 500), (529, openai.InternalServerError, 503)])
def test_openai_sdk_raises_its_own_error_for_claudes(
    oai: openai.OpenAI, status: int, error: type[openai.APIStatusError], client_status: int
) -> None:
    with pytest.raises(error) as raised:
        oai.chat.completions.create(model="gpt-4o", messages=[QUESTION], extra_headers={"X-Sim-Status": str(status)})
    assert raised.value.status_code == client_status
    assert isinstance(raised.value.body, dict) and raised.value.body["message"]


def test_openai_sdk_raises_on_claudes_mid_stream_error(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="gpt-4o", messages=[QUESTION], stream=True,
                                         extra_headers={CANNED: "anthropic-error"})
    seen = []
    with pytest.raises(openai.APIError, match="Overloaded"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert "Hi" in seen


# --- an Anthropic client served by GPT -----------------------------------------------------------------


def test_anthropic_sdk_reads_gpts_answer(claude: anthropic.Anthropic, servers: tuple[str, str]) -> None:
    request: Any = {"model": "claude-sonnet-4-5", "max_tokens": 200, "system": "Be brief.", "messages": [QUESTION]}
    sim = {"X-Sim-Words": "8", "X-Sim-Cached-Tokens": "50"}
    message = claude.messages.create(**request, extra_headers=sim)
    expected = native(servers, "/v1/chat/completions", as_chat(request), **sim)["usage"]
    assert message.type == "message" and message.role == "assistant" and message.model == GPT
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == reply_text(8)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == expected["prompt_tokens"] - 50
    assert message.usage.cache_read_input_tokens == 50 and message.usage.output_tokens == 8


def test_anthropic_sdk_reads_max_tokens_when_gpt_hits_the_limit(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=2, messages=[QUESTION],
                                     extra_headers={"X-Sim-Words": "10"})
    assert message.stop_reason == "max_tokens" and message.content[0].text == reply_text(2)


def test_anthropic_sdk_tool_use_and_result_round_trip_through_gpt(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(model="claude-sonnet-4-5", max_tokens=200, messages=[QUESTION],
                                   tools=ANTHROPIC_TOOLS, tool_choice={"type": "any"})
    assert first.stop_reason == "tool_use"
    [block] = first.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == ARGUMENTS
    assert block.id.startswith("call_")
    answer = claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=200, tools=ANTHROPIC_TOOLS, extra_headers={"X-Sim-Words": "5"},
        messages=[QUESTION, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "dry"}]}])
    assert answer.stop_reason == "end_turn" and answer.content[0].text == reply_text(5)


def test_anthropic_sdk_streams_gpts_answer_with_usage(claude: anthropic.Anthropic, servers: tuple[str, str]) -> None:
    request: Any = {"model": "claude-sonnet-4-5", "max_tokens": 200, "messages": [QUESTION]}
    with claude.messages.stream(**request, extra_headers={"X-Sim-Words": "11"}) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    expected = native(servers, "/v1/chat/completions", as_chat(request), **{"X-Sim-Words": "11"})["usage"]
    assert text == reply_text(11) and message.stop_reason == "end_turn" and message.model == GPT
    assert (message.usage.input_tokens, message.usage.output_tokens) == (expected["prompt_tokens"], 11)


def test_anthropic_sdk_streams_gpts_tool_call_as_input_json(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=200, messages=[QUESTION],
                                tools=ANTHROPIC_TOOLS) as stream:
        events = [event.type for event in stream]
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == ARGUMENTS
    assert events.count("input_json") > 2 and events[-1] == "message_stop"


@pytest.mark.parametrize(("status", "error"), [
    (400, anthropic.BadRequestError), (401, anthropic.AuthenticationError), (404, anthropic.NotFoundError),
    (429, anthropic.RateLimitError), (503, anthropic.InternalServerError)])
def test_anthropic_sdk_raises_its_own_error_for_gpts(claude: anthropic.Anthropic, status: int,
                                                     error: type[anthropic.APIStatusError]) -> None:
    with pytest.raises(error) as raised:
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[QUESTION],
                               extra_headers={"X-Sim-Status": str(status)})
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict) and raised.value.body["type"] == "error"


def test_anthropic_sdk_raises_on_gpts_mid_stream_error(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError, match="The server had an error"), claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=10, messages=[QUESTION],
        extra_headers={CANNED: "openai-error"},
    ) as stream:
        for _ in stream:
            pass

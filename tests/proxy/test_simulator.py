"""The built-in LLM simulator, spoken to by the official `openai`, `anthropic` and `google-genai` SDKs directly
(no proxy in between), and its `X-Sim-*` test controls. No database needed."""

from __future__ import annotations

import asyncio
import base64
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from proxy.simulator import SimulatorThread
from proxy.simulator.content import REPLY

from ..support import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
MESSAGES = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hi"}]}
FULL_REPLY = " ".join(REPLY[:24])
# "Say hello": 3 priming + 4 for the message + ceil(9 bytes / 4) = 3.
SAY_HELLO_PROMPT_TOKENS = 10


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(port=0) as simulator:
        yield simulator


@pytest.fixture
def openai_client(sim: SimulatorThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{sim.base_url}/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(sim: SimulatorThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.base_url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


def events_of(body: bytes) -> list[bytes]:
    return [event for event in body.split(b"\n\n") if event]


# --- OpenAI chat completions ------------------------------------------------------------------

def test_chat_completion_reports_usage_with_cached_and_reasoning_tokens(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        **CHAT, extra_headers={"X-Sim-Cached-Tokens": "1024", "X-Sim-Reasoning-Tokens": "64"}
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.message.content == FULL_REPLY and choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    # Cached tokens are part of the prompt, reasoning tokens part of the completion, as OpenAI counts them.
    assert usage.prompt_tokens == SAY_HELLO_PROMPT_TOKENS + 1024
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1024
    assert usage.completion_tokens == 24 + 64
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 64
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_same_request_same_answer(openai_client: openai.OpenAI) -> None:
    first = openai_client.chat.completions.create(**CHAT)
    second = openai_client.chat.completions.create(**CHAT)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage
    assert first.id != second.id


def test_output_limit_shortens_the_reply(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(**CHAT, max_completion_tokens=5)
    assert completion.choices[0].message.content == " ".join(REPLY[:5])
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_chat_stream_without_include_usage_carries_no_usage_at_all(
    sim: SimulatorThread, openai_client: openai.OpenAI
) -> None:
    chunks = list(openai_client.chat.completions.create(**CHAT, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == FULL_REPLY
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    raw = httpx.post(f"{sim.base_url}/v1/chat/completions", json={**CHAT, "stream": True},
                     headers={"Authorization": "Bearer sk-test"})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert b'"usage"' not in raw.content
    assert raw.content.endswith(b"data: [DONE]\n\n")


def test_chat_stream_with_include_usage_ends_with_a_usage_only_chunk(openai_client: openai.OpenAI) -> None:
    chunks = list(openai_client.chat.completions.create(
        **CHAT, stream=True, stream_options={"include_usage": True}, extra_headers={"X-Sim-Cached-Tokens": "7"}
    ))
    *content, last = chunks
    assert all(chunk.choices and chunk.usage is None for chunk in content)
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 24
    assert last.usage.prompt_tokens == SAY_HELLO_PROMPT_TOKENS + 7
    assert last.usage.prompt_tokens_details is not None and last.usage.prompt_tokens_details.cached_tokens == 7


def test_usage_on_the_last_choice_chunk_as_some_compatible_providers_send_it(openai_client: openai.OpenAI) -> None:
    chunks = list(openai_client.chat.completions.create(
        **CHAT, stream=True, stream_options={"include_usage": True}, extra_headers={"X-Sim-Extra-Usage-Choice": "1"}
    ))
    assert all(chunk.choices for chunk in chunks)
    with_usage = [chunk for chunk in chunks if chunk.usage is not None]
    assert with_usage == [chunks[-1]]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 24


def test_async_client_streams_chat_and_responses(sim: SimulatorThread) -> None:
    async def run() -> tuple[str, int]:
        async with openai.AsyncOpenAI(base_url=f"{sim.base_url}/v1", api_key="sk-test", max_retries=0) as client:
            stream = await client.chat.completions.create(**CHAT, stream=True)
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
            response = await client.responses.create(model="gpt-4o-mini", input="hello")
            assert response.usage is not None
            return text, response.usage.output_tokens

    assert asyncio.run(run()) == (FULL_REPLY, 24)


def test_legacy_completions(openai_client: openai.OpenAI) -> None:
    completion = openai_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", max_tokens=3)
    assert completion.choices[0].text == " ".join(REPLY[:3]) and completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    chunks = list(openai_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", stream=True,
                                                   max_tokens=100, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == FULL_REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 24


# --- OpenAI Responses API ---------------------------------------------------------------------

def test_responses_reports_cached_and_reasoning_tokens(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="o4-mini", input="hello", instructions="Be brief.",
        extra_headers={"X-Sim-Cached-Tokens": "512", "X-Sim-Reasoning-Tokens": "128"},
    )
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.model == "o4-mini" and response.instructions == "Be brief."
    assert response.output_text == FULL_REPLY
    assert [item.type for item in response.output] == ["reasoning", "message"]
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens_details.cached_tokens == 512 and usage.input_tokens > 512
    assert usage.output_tokens_details.reasoning_tokens == 128
    assert usage.output_tokens == 24 + 128
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_responses_stream_events(openai_client: openai.OpenAI) -> None:
    events = list(openai_client.responses.create(model="gpt-4o-mini", input="hello", stream=True,
                                                 extra_headers={"X-Sim-Cached-Tokens": "3"}))
    types = [event.type for event in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == FULL_REPLY and len(deltas) == 24
    assert events[0].response.usage is None
    completed = events[-1].response
    assert completed.usage is not None
    assert completed.usage.input_tokens_details.cached_tokens == 3 and completed.usage.output_tokens == 24
    with openai_client.responses.stream(model="gpt-4o-mini", input="hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == FULL_REPLY


def test_responses_cut_by_max_output_tokens_are_incomplete(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(model="gpt-4o-mini", input="hello", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 16
    events = list(openai_client.responses.create(model="gpt-4o-mini", input="hello", max_output_tokens=16,
                                                 stream=True))
    assert events[-1].type == "response.incomplete"


# --- OpenAI embeddings and models -------------------------------------------------------------

def test_embeddings_as_floats_and_as_base64(openai_client: openai.OpenAI) -> None:
    floats = openai_client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"],
                                             encoding_format="float")
    assert [item.index for item in floats.data] == [0, 1]
    assert all(len(item.embedding) == 8 for item in floats.data)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 4
    # The SDK asks for base64 when no format is given and decodes it.
    decoded = openai_client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    assert [item.embedding for item in decoded.data] == [item.embedding for item in floats.data]
    raw = openai_client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello",
                                                            encoding_format="base64", dimensions=4)
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    assert len(struct.unpack("<4f", base64.b64decode(encoded))) == 4


def test_models_list_in_each_providers_shape(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    assert "gpt-4o-mini" in [model.id for model in openai_client.models.list()]
    assert openai_client.models.retrieve("my-finetune").id == "my-finetune"
    assert any(model.id.startswith("claude-") for model in anthropic_client.models.list())


# --- Anthropic Messages -----------------------------------------------------------------------

def test_message_reports_cache_reads_and_writes(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(**MESSAGES, extra_headers={
        "X-Sim-Cached-Tokens": "100", "X-Sim-Cache-Write-Tokens": "50", "X-Sim-Cache-Write-1h-Tokens": "20"})
    assert message.id.startswith("msg_") and message.model == "claude-haiku-4-5"
    assert message.content[0].type == "text" and message.content[0].text == FULL_REPLY
    assert message.stop_reason == "end_turn"
    usage = message.usage
    assert usage.cache_read_input_tokens == 100
    assert usage.cache_creation_input_tokens == 70
    assert usage.cache_creation is not None
    assert (usage.cache_creation.ephemeral_5m_input_tokens, usage.cache_creation.ephemeral_1h_input_tokens) == (50, 20)
    # input_tokens is the uncached part only, as Anthropic counts it: "Say hi" is 3 + 4 + 2.
    assert usage.input_tokens == 9
    assert usage.output_tokens == 24


def test_message_stream_events_and_cumulative_usage(
    sim: SimulatorThread, anthropic_client: anthropic.Anthropic
) -> None:
    events = list(anthropic_client.messages.create(**MESSAGES, stream=True,
                                                   extra_headers={"X-Sim-Cached-Tokens": "40"}))
    types = [event.type for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert types.count("content_block_delta") == 24
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.usage.cache_read_input_tokens == 40 and start.message.usage.input_tokens == 9
    assert delta.usage.output_tokens == 24 and delta.usage.cache_read_input_tokens == 40
    assert delta.delta.stop_reason == "end_turn"
    with anthropic_client.messages.stream(**MESSAGES) as stream:
        assert "".join(stream.text_stream) == FULL_REPLY
        assert stream.get_final_message().usage.output_tokens == 24
    raw = httpx.post(f"{sim.base_url}/v1/messages", json={**MESSAGES, "stream": True},
                     headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"})
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw.content


def test_message_cut_by_max_tokens(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(**{**MESSAGES, "max_tokens": 4})
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 4


def test_count_tokens(anthropic_client: anthropic.Anthropic) -> None:
    counted = anthropic_client.messages.count_tokens(model="claude-haiku-4-5", messages=MESSAGES["messages"])
    assert counted.input_tokens == 9


# --- errors -----------------------------------------------------------------------------------

def test_missing_credentials_get_each_providers_401(sim: SimulatorThread) -> None:
    openai_reply = httpx.post(f"{sim.base_url}/v1/chat/completions", json=CHAT)
    assert openai_reply.status_code == 401
    assert openai_reply.json()["error"]["type"] == "invalid_request_error"
    anthropic_reply = httpx.post(f"{sim.base_url}/v1/messages", json=MESSAGES)
    assert anthropic_reply.status_code == 401
    assert anthropic_reply.json()["error"]["type"] == "authentication_error"
    assert anthropic_reply.json()["type"] == "error"
    with_x_api_key = httpx.post(f"{sim.base_url}/v1/messages", json=MESSAGES, headers={"x-api-key": "sk-ant"})
    assert with_x_api_key.status_code == 200


@pytest.mark.parametrize(("status", "exception", "error_type"), [
    (400, openai.BadRequestError, "invalid_request_error"),
    (429, openai.RateLimitError, "requests"),
    (500, openai.InternalServerError, "server_error"),
])
def test_status_header_gives_an_openai_error(
    openai_client: openai.OpenAI, status: int, exception: type[Exception], error_type: str
) -> None:
    with pytest.raises(exception) as caught:
        openai_client.chat.completions.create(**CHAT, stream=True, extra_headers={"X-Sim-Status": str(status)})
    assert caught.value.status_code == status
    assert caught.value.body["type"] == error_type


@pytest.mark.parametrize(("status", "exception", "error_type"), [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (529, anthropic.OverloadedError, "overloaded_error"),
])
def test_status_header_gives_an_anthropic_error(
    anthropic_client: anthropic.Anthropic, status: int, exception: type[Exception], error_type: str
) -> None:
    with pytest.raises(exception) as caught:
        anthropic_client.messages.create(**MESSAGES, extra_headers={"X-Sim-Status": str(status)})
    assert caught.value.status_code == status
    assert caught.value.body == {"type": "error", "error": {"type": error_type,
                                                            "message": caught.value.body["error"]["message"]}}


def test_error_bodies_are_the_same_every_time(sim: SimulatorThread) -> None:
    headers = {"Authorization": "Bearer sk-test", "X-Sim-Status": "429"}
    first = httpx.post(f"{sim.base_url}/v1/chat/completions", json=CHAT, headers=headers)
    second = httpx.post(f"{sim.base_url}/v1/chat/completions", json=CHAT, headers=headers)
    assert first.status_code == 429 and first.content == second.content


def test_bad_requests(sim: SimulatorThread) -> None:
    auth = {"Authorization": "Bearer sk-test"}
    not_json = httpx.post(f"{sim.base_url}/v1/chat/completions", content=b"{nope", headers=auth)
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
    no_messages = httpx.post(f"{sim.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini"}, headers=auth)
    assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"
    no_max_tokens = httpx.post(f"{sim.base_url}/v1/messages", json={"model": "claude", "messages": []},
                               headers={"x-api-key": "sk-ant"})
    assert no_max_tokens.status_code == 400 and no_max_tokens.json()["error"]["message"] == "max_tokens: Field required"
    bad_control = httpx.post(f"{sim.base_url}/v1/chat/completions", json=CHAT,
                             headers={**auth, "X-Sim-Cached-Tokens": "lots"})
    assert bad_control.status_code == 400 and "X-Sim-Cached-Tokens" in bad_control.json()["error"]["message"]
    unknown = httpx.post(f"{sim.base_url}/v1/nowhere", headers=auth)
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "Invalid URL (POST /v1/nowhere)"


# --- stream controls --------------------------------------------------------------------------

def _next_in_background(chunks: Iterator[object]) -> queue.Queue[object]:
    arrived: queue.Queue[object] = queue.Queue()
    threading.Thread(target=lambda: arrived.put(next(chunks)), daemon=True).start()
    return arrived


def test_hold_sends_the_first_event_then_waits_for_release(sim: SimulatorThread, openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(**CHAT, stream=True, extra_headers={"X-Sim-Hold": "hold-1"})
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.role == "assistant"
    second = _next_in_background(chunks)
    with pytest.raises(queue.Empty):
        second.get(timeout=0.3)
    assert httpx.post(f"{sim.base_url}/_sim/release/hold-1").status_code == 200
    assert second.get(timeout=5).choices[0].delta.content == REPLY[0]
    assert len(list(chunks)) == 24


def test_a_release_before_the_hold_lets_the_stream_through(sim: SimulatorThread, openai_client: openai.OpenAI) -> None:
    httpx.post(f"{sim.base_url}/_sim/release/early")
    started = time.monotonic()
    chunks = list(openai_client.chat.completions.create(**CHAT, stream=True, extra_headers={"X-Sim-Hold": "early"}))
    assert len(chunks) == 26 and time.monotonic() - started < 2


def test_a_forgotten_hold_times_out() -> None:
    with SimulatorThread(port=0, hold_timeout_s=0.2) as sim:
        started = time.monotonic()
        reply = httpx.post(f"{sim.base_url}/v1/chat/completions", json={**CHAT, "stream": True},
                           headers={"Authorization": "Bearer sk-test", "X-Sim-Hold": "never"})
    assert reply.content.endswith(b"data: [DONE]\n\n")
    assert 0.2 <= time.monotonic() - started < 5


def test_drop_after_cuts_the_stream_short(sim: SimulatorThread, anthropic_client: anthropic.Anthropic) -> None:
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
        "POST", f"{sim.base_url}/v1/chat/completions", json={**CHAT, "stream": True},
        headers={"Authorization": "Bearer sk-test", "X-Sim-Drop-After": "3"},
    ) as response:
        for piece in response.iter_bytes():
            received += piece
    assert len(events_of(received)) == 3
    stream = anthropic_client.messages.create(**MESSAGES, stream=True, extra_headers={"X-Sim-Drop-After": "5"})
    # The SDK lets its HTTP library's own error through.
    with pytest.raises(Exception, match="incomplete chunked read"):
        list(stream)


def test_drop_body_after_cuts_a_json_answer_short(sim: SimulatorThread) -> None:
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
        "POST", f"{sim.base_url}/v1/chat/completions", json=CHAT,
        headers={"Authorization": "Bearer sk-test", "X-Sim-Drop-Body-After": "20"},
    ) as response:
        assert response.status_code == 200 and int(response.headers["content-length"]) > 20
        for piece in response.iter_bytes():
            received += piece
    assert received == received[:20] and len(received) == 20


def test_latency_and_chunk_delay(openai_client: openai.OpenAI) -> None:
    started = time.monotonic()
    openai_client.chat.completions.create(**CHAT, extra_headers={"X-Sim-Latency-Ms": "200"})
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    chunks = list(openai_client.chat.completions.create(**CHAT, stream=True, extra_headers={
        "X-Sim-Chunk-Delay-Ms": "20", "X-Sim-Words": "5"}))
    assert len(chunks) == 7
    assert time.monotonic() - started >= 6 * 0.02


def test_server_wide_delays_come_from_create_app() -> None:
    with SimulatorThread(port=0, latency_ms=150) as sim:
        started = time.monotonic()
        httpx.post(f"{sim.base_url}/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer x"})
        assert time.monotonic() - started >= 0.15


# --- fixtures ---------------------------------------------------------------------------------

RECORDED_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Recorded"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":1}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n\n'
)


@pytest.fixture
def recordings(tmp_path: Path) -> Iterator[SimulatorThread]:
    (tmp_path / "recorded_stream.sse").write_bytes(RECORDED_STREAM)
    (tmp_path / "recorded.json").write_bytes(b'{"id": "chatcmpl-recorded", "note": "kept as is"}\n')
    with SimulatorThread(port=0, fixtures_dir=tmp_path, chunk_delay_ms=30) as simulator:
        yield simulator


def test_fixture_stream_is_replayed_byte_for_byte_one_event_per_write(recordings: SimulatorThread) -> None:
    headers = {"x-api-key": "sk-ant", "X-Sim-Fixture": "recorded_stream.sse"}
    with httpx.stream("POST", f"{recordings.base_url}/v1/messages", json=MESSAGES, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        pieces = list(response.iter_raw())
    assert b"".join(pieces) == RECORDED_STREAM
    assert len(pieces) == 6  # the chunk delay keeps the writes apart on the wire
    with anthropic.Anthropic(base_url=recordings.base_url, api_key="sk-ant", max_retries=0) as client:
        message = client.messages.create(**MESSAGES, extra_headers={"X-Sim-Fixture": "recorded_stream.sse"},
                                         stream=True)
        assert [event.type for event in message][-1] == "message_stop"


def test_fixture_json_is_replayed_as_is(recordings: SimulatorThread) -> None:
    reply = httpx.post(f"{recordings.base_url}/v1/chat/completions", json=CHAT,
                       headers={"Authorization": "Bearer sk-test", "X-Sim-Fixture": "recorded.json"})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert reply.content == b'{"id": "chatcmpl-recorded", "note": "kept as is"}\n'


@pytest.mark.parametrize("name", ["missing.sse", "../recorded.json", ".hidden"])
def test_unknown_or_outside_fixtures_are_404(recordings: SimulatorThread, name: str) -> None:
    reply = httpx.post(f"{recordings.base_url}/v1/chat/completions", json=CHAT,
                       headers={"Authorization": "Bearer sk-test", "X-Sim-Fixture": name})
    assert reply.status_code == 404 and "fixture" in reply.json()["error"]["message"]


def test_repository_fixtures_directory_is_the_default(sim: SimulatorThread) -> None:
    from proxy.simulator.app import DEFAULT_FIXTURES_DIR

    assert DEFAULT_FIXTURES_DIR == REPOSITORY / "tests" / "fixtures" / "sse"


# --- introspection ----------------------------------------------------------------------------

def test_recorded_requests(sim: SimulatorThread, openai_client: openai.OpenAI) -> None:
    assert httpx.delete(f"{sim.base_url}/_sim/requests").status_code == 204
    openai_client.chat.completions.create(**CHAT, extra_headers={"X-Feature-Name": "support-bot"},
                                          extra_query={"api-version": "2024-01"})
    httpx.post(f"{sim.base_url}/v1/chat/completions", content=b"not json", headers={"Authorization": "Bearer x"})
    recorded = httpx.get(f"{sim.base_url}/_sim/requests").json()
    assert len(recorded) == 2  # the /_sim/ calls themselves are not recorded
    first, second = recorded
    assert (first["method"], first["path"], first["query"]) == ("POST", "/v1/chat/completions", "api-version=2024-01")
    assert first["headers"]["authorization"] == "Bearer sk-test"
    assert first["headers"]["x-feature-name"] == "support-bot"
    assert first["body"] == CHAT
    assert second["body"] is None
    httpx.delete(f"{sim.base_url}/_sim/requests")
    assert httpx.get(f"{sim.base_url}/_sim/requests").json() == []


def test_only_the_last_hundred_requests_are_kept(sim: SimulatorThread) -> None:
    with httpx.Client(base_url=sim.base_url) as client:
        for n in range(105):
            client.get(f"/v1/models/m{n}", headers={"Authorization": "Bearer x"})
        recorded = client.get("/_sim/requests").json()
    assert len(recorded) == 100 and recorded[-1]["path"] == "/v1/models/m104"


# --- running it -------------------------------------------------------------------------------

def test_runs_as_a_module_without_django() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy.simulator", "--port", str(port), "--latency-ms", "1"],
                               cwd=REPOSITORY, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/_sim/health")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and process.poll() is None, "the simulator did not start"
                time.sleep(0.05)
        assert reply.json() == {"status": "ok"}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert f"listening on http://127.0.0.1:{port}" in stderr


def test_management_command_takes_the_same_options() -> None:
    from proxy.management.commands.simulator import Command
    from proxy.simulator.cli import serve_options

    parser = Command().create_parser("manage.py", "simulator")
    options = vars(parser.parse_args(["--host", "0.0.0.0", "--port", "8200", "--latency-ms", "5",
                                      "--chunk-delay-ms", "2"]))
    assert serve_options(options) == {"host": "0.0.0.0", "port": 8200, "latency_ms": 5.0, "chunk_delay_ms": 2.0,
                                      "reply_words": 24}


# --- Gemini, spoken to by google-genai --------------------------------------------------------------

def gemini_client(sim: SimulatorThread, **headers: str):
    from google import genai
    from google.genai import types

    return genai.Client(api_key="AIza-sim", http_options=types.HttpOptions(
        base_url=sim.base_url, headers=headers or None, retry_options=types.HttpRetryOptions(attempts=1)))


def test_gemini_usage_metadata_counts_thoughts_cache_tool_use_and_a_long_prompt_beside_the_reply(
        sim: SimulatorThread) -> None:
    from google.genai import types

    client = gemini_client(sim, **{"X-Sim-Reasoning-Tokens": "9", "X-Sim-Cached-Tokens": "100",
                                   "X-Sim-Tool-Use-Prompt-Tokens": "5"})
    config = types.GenerateContentConfig(max_output_tokens=4)
    response = client.models.generate_content(model="gemini-2.5-pro", contents="Say hello", config=config)
    usage = response.usage_metadata
    # "Say hello": 4 for the turn + ceil(9 bytes / 4) = 3, and the cached 100 are part of the prompt.
    assert (usage.prompt_token_count, usage.cached_content_token_count, usage.candidates_token_count,
            usage.thoughts_token_count, usage.tool_use_prompt_token_count) == (107, 100, 4, 9, 5)
    assert usage.total_token_count == 107 + 4 + 9 + 5
    assert response.text == " ".join(REPLY[:4]) and response.candidates[0].finish_reason == "MAX_TOKENS"

    long = gemini_client(sim, **{"X-Sim-Prompt-Tokens": "250000"})
    chunks = list(long.models.generate_content_stream(model="gemini-2.5-pro", contents="hi", config=config))
    assert [c.usage_metadata.candidates_token_count for c in chunks] == [1, 2, 3, 4]
    assert {c.usage_metadata.prompt_token_count for c in chunks} == {250000}
    assert chunks[-1].candidates[0].finish_reason == "MAX_TOKENS" and chunks[0].candidates[0].finish_reason is None


def test_gemini_count_tokens_embeddings_and_models(sim: SimulatorThread) -> None:
    client = gemini_client(sim)
    assert client.models.count_tokens(model="gemini-2.5-flash", contents="Say hello").total_tokens == 7
    embedded = client.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0].values) == 8
    assert "models/gemini-2.5-pro" in [m.name for m in client.models.list()]


def test_gemini_errors_are_googles(sim: SimulatorThread) -> None:
    url = f"{sim.base_url}/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    by_query = httpx.post(f"{url}?key=AIza-sim", json=body)
    assert by_query.status_code == 200
    limited = httpx.post(url, json=body, headers={"x-goog-api-key": "k", "X-Sim-Status": "429"})
    assert limited.status_code == 429 and limited.json()["error"] == {
        "code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}
    unknown = httpx.post(url.replace("generateContent", "summon"), json=body, headers={"x-goog-api-key": "k"})
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"

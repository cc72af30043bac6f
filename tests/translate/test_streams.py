"""Stream translation, both ways: event by event, as the bytes arrive, and the same bytes whatever the
chunk boundaries (the simulator's real streams split at every position, and fed a byte at a time)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from proxy.providers import WIRE_FORMATS
from proxy.providers.base import Operation, sse_json_object
from proxy.simulator import SimulatorThread
from proxy.translate import StreamTranslator
from proxy.translate.completion_to_message import ChatToMessagesStream
from proxy.translate.message_to_completion import MessagesToChatStream

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def events(stream: bytes) -> list[dict]:
    return [event for part in stream.split(b"\n\n") if (event := sse_json_object(part)) is not None]


def chunk(delta: dict | None = None, finish: str | None = None, **extra: object) -> bytes:
    payload: dict = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
                     "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
                     **extra}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def anthropic_event(payload: dict) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


@pytest.fixture(scope="module")
def recorded() -> Iterator[dict[str, bytes]]:
    """The simulator's own streams: text and a tool call, in both formats."""
    with SimulatorThread(port=0) as sim:
        def post(path: str, body: dict) -> bytes:
            return httpx.post(sim.base_url + path, json=body, headers={
                "x-api-key": "k", "Authorization": "Bearer k", "X-Sim-Words": "12", "X-Sim-Cached-Tokens": "7"}).content

        anthropic = {"model": "claude-3-5-haiku-20241022", "max_tokens": 100, "stream": True,
                     "messages": [{"role": "user", "content": "Hello there"}]}
        openai = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
                  "messages": [{"role": "user", "content": "Hello there"}]}
        yield {
            "anthropic-text": post("/v1/messages", anthropic),
            "anthropic-tool": post("/v1/messages", {**anthropic, "tools": [
                {"name": "get_weather", "input_schema": TOOLS[0]["function"]["parameters"]}]}),
            "openai-text": post("/v1/chat/completions", openai),
            "openai-tool": post("/v1/chat/completions", {**openai, "tools": TOOLS}),
        }


def translator(name: str) -> StreamTranslator:
    if name.startswith("anthropic"):
        return MessagesToChatStream(include_usage=True, created=1)
    return ChatToMessagesStream()


def whole(name: str, stream: bytes) -> bytes:
    t = translator(name)
    return t.feed(stream) + t.close()


@pytest.mark.parametrize("name", ["anthropic-text", "anthropic-tool", "openai-text", "openai-tool"])
@pytest.mark.parametrize("line_ending", ["\n", "\r\n"])
def test_translation_is_the_same_wherever_the_stream_is_split(recorded: dict[str, bytes], name: str,
                                                              line_ending: str) -> None:
    stream = recorded[name].replace(b"\n", line_ending.encode())
    expected = whole(name, stream)
    assert expected.count(b"\n\n") > 5
    for cut in range(len(stream) + 1):
        t = translator(name)
        assert t.feed(stream[:cut]) + t.feed(stream[cut:]) + t.close() == expected, f"split at {cut}"
    t = translator(name)
    assert b"".join(t.feed(stream[i:i + 1]) for i in range(len(stream))) + t.close() == expected


@pytest.mark.parametrize("name", ["anthropic-text", "openai-text"])
def test_translation_is_incremental(recorded: dict[str, bytes], name: str) -> None:
    stream = recorded[name]
    t = translator(name)
    half = t.feed(stream[: len(stream) // 2])
    texts = [e["choices"][0]["delta"].get("content") for e in events(half) if e.get("choices")] \
        if name.startswith("anthropic") else [e["delta"].get("text") for e in events(half) if "delta" in e]
    assert len([text for text in texts if text]) >= 3  # half the answer is out before the rest arrives


def test_openai_client_gets_claudes_stream_as_chunks(recorded: dict[str, bytes]) -> None:
    out = events(whole("anthropic-text", recorded["anthropic-text"]))
    assert out[0]["choices"][0]["delta"]["role"] == "assistant"
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    usage = out[-1]["usage"]
    assert out[-1]["choices"] == [] and usage["completion_tokens"] == 12
    assert usage["prompt_tokens_details"]["cached_tokens"] == 7
    assert whole("anthropic-text", recorded["anthropic-text"]).endswith(b"data: [DONE]\n\n")


def test_anthropic_client_gets_gpts_stream_as_messages_events(recorded: dict[str, bytes]) -> None:
    out = events(whole("openai-tool", recorded["openai-tool"]))
    assert [e["type"] for e in out][:2] == ["message_start", "content_block_start"]
    assert out[1]["content_block"]["type"] == "tool_use" and out[1]["content_block"]["name"] == "get_weather"
    arguments = "".join(e["delta"]["partial_json"] for e in out if e["type"] == "content_block_delta")
    assert orjson.loads(arguments) == {"city": "sample"}
    assert [e["type"] for e in out][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    usage = out[-2]["usage"]
    assert out[-2]["delta"]["stop_reason"] == "tool_use"
    assert usage["cache_read_input_tokens"] == 7 and usage["output_tokens"] > 0 and usage["input_tokens"] > 0


def test_parallel_tool_calls_become_one_tool_use_block_each() -> None:
    t = ChatToMessagesStream()
    stream = (chunk({"role": "assistant", "content": "Checking."})
              + chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                       "function": {"name": "f", "arguments": ""}}]})
              + chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":1}"}}]})
              + chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                       "function": {"name": "g", "arguments": "{}"}}]})
              + chunk({}, "tool_calls") + chunk(usage={"prompt_tokens": 9, "completion_tokens": 4})
              + b"data: [DONE]\n\n")
    out = events(t.feed(stream) + t.close())
    starts = [(e["index"], e["content_block"]["type"]) for e in out if e["type"] == "content_block_start"]
    assert starts == [(0, "text"), (1, "tool_use"), (2, "tool_use")]
    stops = [e["index"] for e in out if e["type"] == "content_block_stop"]
    assert stops == [0, 1, 2]
    deltas = [(e["index"], e["delta"]["type"]) for e in out if e["type"] == "content_block_delta"]
    assert deltas == [(0, "text_delta"), (1, "input_json_delta"), (2, "input_json_delta")]
    assert out[-2]["usage"] == {"input_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                "output_tokens": 4}


def test_openai_stream_without_done_is_finished_at_close_and_a_cut_one_is_not() -> None:
    t = ChatToMessagesStream()
    out = t.feed(chunk({"content": "Hi"}) + chunk({}, "length"))
    assert b"message_stop" not in out  # usage may still come
    assert events(t.close())[-2]["delta"]["stop_reason"] == "max_tokens"
    cut = ChatToMessagesStream()
    assert b"message_stop" not in cut.feed(chunk({"content": "Hi"})) + cut.close()


def test_anthropic_stream_thinking_and_pings_say_nothing_to_an_openai_client() -> None:
    t = MessagesToChatStream(include_usage=False)
    out = t.feed(anthropic_event({"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}})
                 + b'event: ping\ndata: {"type": "ping"}\n\n'
                 + anthropic_event({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}})
                 + anthropic_event({"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "thinking_delta", "thinking": "hm"}})
                 + anthropic_event({"type": "content_block_delta", "index": 1,
                                    "delta": {"type": "input_json_delta", "partial_json": "{"}}))
    assert len(events(out)) == 1 and b"hm" not in out


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter")])
def test_anthropic_stop_reasons_become_finish_reasons_in_streams(stop_reason: str, finish_reason: str) -> None:
    t = MessagesToChatStream(include_usage=False)
    out = t.feed(anthropic_event({"type": "message_delta", "delta": {"stop_reason": stop_reason},
                                  "usage": {"output_tokens": 3}}))
    assert events(out)[0]["choices"][0]["finish_reason"] == finish_reason


def test_mid_stream_errors_become_the_clients_error_event() -> None:
    to_openai = MessagesToChatStream(include_usage=True)
    out = to_openai.feed(anthropic_event({"type": "error", "error": {"type": "overloaded_error",
                                                                    "message": "Overloaded"}}))
    assert events(out) == [{"error": {"message": "Overloaded", "type": "server_error", "param": None, "code": None}}]
    assert b"[DONE]" not in out + to_openai.close()
    to_anthropic = ChatToMessagesStream()
    error = b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n'
    out = to_anthropic.feed(chunk({"content": "Hi"}) + error)
    assert out.split(b"\n\n")[-2].startswith(b"event: error\n")
    assert events(out)[-1] == {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    assert to_anthropic.close() == b""


def test_client_info_decides_whether_an_openai_client_gets_the_usage_chunk() -> None:
    from proxy.translate import ChatViaMessages
    wire = WIRE_FORMATS["openai"]
    asked = wire.parse_request(Operation.CHAT, b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}')
    injected = wire.parse_request(Operation.CHAT, b'{"model":"m","stream":true}')
    assert injected.strip_usage_chunk  # the proxy asked on the client's behalf: not the client's chunk
    done = anthropic_event({"type": "message_stop"})
    assert b'"usage":{' in ChatViaMessages().stream_translator(client_info=asked).feed(done)
    assert b"usage" not in ChatViaMessages().stream_translator(client_info=injected).feed(done)


def test_malformed_upstream_events_are_skipped_not_fatal() -> None:
    t = MessagesToChatStream(include_usage=False, created=1)
    tool_use = {"type": "tool_use", "id": "t", "name": "f"}
    out = t.feed(b"data: not json\n\n"
                 + anthropic_event({"type": "content_block_start", "index": "x", "content_block": tool_use})
                 + b"data: [1, 2]\n\n")
    assert len(events(out)) == 1
    c = ChatToMessagesStream()
    assert c.feed(b"data: {oops\n\n" + b'data: {"choices": "no"}\n\n').startswith(b"event: message_start")


def test_claudes_text_then_parallel_tool_uses_become_content_then_indexed_tool_calls() -> None:
    t = MessagesToChatStream(include_usage=False, created=1)
    stream = b"".join(anthropic_event(e) for e in [
        {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "f"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "t2", "name": "g"}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ":1}"}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ])
    deltas = [e["choices"][0]["delta"] for e in events(t.feed(stream) + t.close())]
    assert deltas[1] == {"content": "Checking."}
    calls = [call for delta in deltas for call in delta.get("tool_calls", [])]
    assert [(c["index"], c.get("id"), c["function"].get("name"), c["function"]["arguments"]) for c in calls] == [
        (0, "t1", "f", ""), (0, None, None, "{}"), (1, "t2", "g", ""), (1, None, None, '{"a"'), (1, None, None, ":1}")]
    assert deltas[-1] == {}

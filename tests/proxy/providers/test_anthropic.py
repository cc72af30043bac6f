"""The Anthropic wire format: routes, requests, usage from bodies and streams, error bodies."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx2
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.providers import WIRE_FORMATS, Operation, ProviderError, RequestInfo
from proxy.providers.anthropic import AnthropicWireFormat, messages_usage
from proxy.usage import TokenUsage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sse"
ANTHROPIC = WIRE_FORMATS["anthropic"]

STREAMS = {
    "anthropic_messages_stream": (
        "claude-3-5-haiku-20241022",
        TokenUsage(input_tokens=21, output_tokens=23),
    ),
    "anthropic_messages_stream_restated": (
        "claude-sonnet-4-5-20250929",
        TokenUsage(input_tokens=9120 + 8192, output_tokens=512, cached_input_tokens=8192),
    ),
    "anthropic_messages_stream_cache": (
        "claude-sonnet-4-5-20250929",
        TokenUsage(
            input_tokens=15 + 3072 + 12000,
            output_tokens=187,
            cached_input_tokens=12000,
            cache_write_tokens=3072,
            cache_write_1h_tokens=2048,
        ),
    ),
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def read_stream(data: bytes, cuts: list[int]):
    """Feed `data` split at `cuts`; return (reader, forwarded bytes, what each feed returned)."""
    info = RequestInfo(
        operation=Operation.MESSAGES,
        model="",
        stream=True,
        max_output_tokens=None,
        estimated_input_tokens=0,
        body=b"{}",
    )
    reader = ANTHROPIC.stream_reader(info)
    bounds = [0, *sorted(set(cuts)), len(data)]
    returned = [reader.feed(data[start:end]) for start, end in zip(bounds, bounds[1:], strict=False)]
    closing = reader.close()
    return reader, b"".join(returned) + closing, returned


def event(name: str, payload: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def message_start(usage: dict, model: str = "claude-sonnet-4-5-20250929") -> bytes:
    return event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            },
        },
    )


def message_delta(usage: dict) -> bytes:
    return event(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": usage},
    )


def text_delta(text: str) -> bytes:
    return event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


# --- routes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/v1/messages", Operation.MESSAGES),
        ("POST", "/messages", Operation.MESSAGES),
        ("POST", "/v1/messages?beta=true", Operation.MESSAGES),
        ("POST", "/v1/messages/", Operation.MESSAGES),
        ("POST", "/v1/messages/count_tokens", None),
        ("POST", "/v1/messages/batches", None),
        ("GET", "/v1/messages/batches/msgbatch_1", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/complete", None),
        ("POST", "/v1/files", None),
        ("GET", "/v1/messages", None),
    ],
)
def test_routes_metered_operations_and_nothing_else(method, path, operation):
    assert ANTHROPIC.operation_for(method, path) is operation


def test_registry_holds_the_anthropic_format():
    assert isinstance(WIRE_FORMATS["anthropic"], AnthropicWireFormat)


# --- requests --------------------------------------------------------------------------------------


def test_request_gives_model_stream_and_max_tokens_and_keeps_the_body():
    body = orjson.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": "Hello"}],
        }
    )

    info = ANTHROPIC.parse_request(Operation.MESSAGES, body)

    assert (info.model, info.stream, info.max_output_tokens) == ("claude-sonnet-4-5", True, 1024)
    assert info.body is body
    assert info.strip_usage_chunk is False


@pytest.mark.parametrize("body", [b"", b"{", b"{'model': 'claude'}", b"\x00"])
def test_invalid_json_is_a_400(body):
    with pytest.raises(ProviderError) as caught:
        ANTHROPIC.parse_request(Operation.MESSAGES, body)

    assert (caught.value.status, caught.value.error_type) == (400, "invalid_request_error")


@pytest.mark.parametrize("body", [b"[]", b'"hello"', b"3.5", b"null"])
def test_json_that_is_not_an_object_is_a_400(body):
    with pytest.raises(ProviderError) as caught:
        ANTHROPIC.parse_request(Operation.MESSAGES, body)

    assert caught.value.status == 400


def estimate(payload: dict) -> int:
    return ANTHROPIC.parse_request(Operation.MESSAGES, orjson.dumps(payload)).estimated_input_tokens


def test_estimate_counts_system_messages_images_and_tool_results():
    payload = {
        "system": [{"type": "text", "text": "x" * 400, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 50_000}},
                    {"type": "text", "text": "x" * 40},
                ],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "y" * 40}]},
        ],
    }

    # 100 (system) + 1000 (image) + 10 + 1 ("f{}" rounds up with the rest) + 10, 4 a message
    assert estimate(payload) == -(-(400 + 40 + 1 + 2 + 40) // 4) + 1000 + 3 * 4


def test_tools_add_their_json_and_the_tool_use_system_prompt():
    tools = [{"name": "get_weather", "description": "Weather now", "input_schema": {"type": "object"}}]
    plain = {"messages": [{"role": "user", "content": "x" * 40}]}

    assert estimate({**plain, "tools": tools}) == estimate(plain) + -(-len(orjson.dumps(tools)) // 4) + 346


# --- usage -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_streamed_usage_equals_the_non_streamed_twin(stream_name):
    model, expected = STREAMS[stream_name]
    body_name = stream_name.replace("_stream", "") + ".json"

    reader, _, _ = read_stream(fixture(stream_name + ".sse"), [])

    assert ANTHROPIC.usage_from_body(Operation.MESSAGES, fixture(body_name)) == (expected, model)
    assert (reader.usage, reader.served_model) == (expected, model)


def test_input_counts_cache_writes_and_reads():
    usage = {
        "input_tokens": 15,
        "cache_creation_input_tokens": 3072,
        "cache_read_input_tokens": 12000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1024, "ephemeral_1h_input_tokens": 2048},
        "output_tokens": 187,
    }

    assert messages_usage(usage) == TokenUsage(
        input_tokens=15087,
        output_tokens=187,
        cached_input_tokens=12000,
        cache_write_tokens=3072,
        cache_write_1h_tokens=2048,
    )


def test_null_cache_fields_count_as_zero():
    usage = {
        "input_tokens": 9,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation": None,
        "output_tokens": 4,
    }

    assert messages_usage(usage) == TokenUsage(input_tokens=9, output_tokens=4)


@pytest.mark.parametrize("body", [b"", b"upstream connect error", b'{"type": "error"}'])
def test_bodies_without_usage_give_none(body):
    assert ANTHROPIC.usage_from_body(Operation.MESSAGES, body)[0] is None


# --- streams ---------------------------------------------------------------------------------------


def test_input_from_message_start_stands_when_message_delta_gives_output_only():
    data = fixture("anthropic_messages_stream.sse")
    assert b'"usage":{"output_tokens":23}' in data

    reader, _, _ = read_stream(data, [])

    assert reader.usage == TokenUsage(input_tokens=21, output_tokens=23)


def test_restated_input_and_cache_fields_win_over_message_start():
    data = fixture("anthropic_messages_stream_restated.sse")

    reader, _, _ = read_stream(data, [])

    # message_start said 14 input + 4096 cache reads; the final message_delta restates 9120 + 8192.
    assert reader.usage == STREAMS["anthropic_messages_stream_restated"][1]


def test_the_1h_cache_breakdown_survives_a_restatement_without_it():
    data = fixture("anthropic_messages_stream_cache.sse")
    delta = data[data.index(b"event: message_delta") :]
    assert b"ephemeral_1h" not in delta

    reader, _, _ = read_stream(data, [])

    assert reader.usage.cache_write_1h_tokens == 2048


def test_message_delta_usage_is_cumulative_never_summed():
    data = (
        message_start(
            {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
        )
        + text_delta("Hello")
        + message_delta({"output_tokens": 40})
        + message_delta({"output_tokens": 55})
        + event("message_stop", {"type": "message_stop"})
    )

    reader, _, _ = read_stream(data, [])

    assert reader.usage == TokenUsage(input_tokens=10, output_tokens=55)


def test_text_mentioning_usage_events_changes_nothing():
    data = (
        message_start({"input_tokens": 10, "output_tokens": 1})
        + text_delta('Listen for "message_delta" and read its "usage": {"output_tokens": 999}')
        + message_delta({"output_tokens": 30})
    )

    reader, forwarded, _ = read_stream(data, [17])

    assert reader.usage == TokenUsage(input_tokens=10, output_tokens=30)
    assert forwarded == data


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_forwards_every_byte_the_moment_it_arrives(stream_name):
    data = fixture(stream_name + ".sse")
    cuts = list(range(0, len(data), 29))

    _, forwarded, returned = read_stream(data, cuts)

    bounds = [0, *cuts, len(data)]
    assert returned == [data[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]
    assert forwarded == data


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_every_two_way_split_reads_the_same_usage(stream_name):
    model, expected = STREAMS[stream_name]
    data = fixture(stream_name + ".sse")

    for cut in range(1, len(data)):
        reader, _, _ = read_stream(data, [cut])
        assert (reader.usage, reader.served_model) == (expected, model), cut


@settings(max_examples=150, deadline=None)
@given(
    stream_name=st.sampled_from(list(STREAMS)),
    crlf=st.booleans(),
    cut_fractions=st.lists(st.floats(min_value=0, max_value=1), max_size=40),
)
def test_any_split_and_line_ending_reads_the_same_usage(stream_name, crlf, cut_fractions):
    model, expected = STREAMS[stream_name]
    data = fixture(stream_name + ".sse")
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    cuts = [int(fraction * len(data)) for fraction in cut_fractions]

    reader, forwarded, _ = read_stream(data, cuts)

    assert (reader.usage, reader.served_model) == (expected, model)
    assert forwarded == data


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_a_stream_cut_before_message_delta_has_no_usage_but_an_estimate(stream_name):
    data = fixture(stream_name + ".sse")
    cut_at = data.index(b"event: message_delta") + 30

    reader, _, _ = read_stream(data[:cut_at], [cut_at // 2])

    assert reader.usage is None
    assert reader.served_model == STREAMS[stream_name][0]
    assert reader.estimated_output_tokens() > 0


def test_estimate_counts_text_deltas():
    data = fixture("anthropic_messages_stream.sse")

    reader, _, _ = read_stream(data[: data.index(b"event: message_delta")], [])

    text = "Hello! The capital of France is Paris, a city famous for its art, fashion, gastronomy and culture."
    assert reader.estimated_output_tokens() == -(-len(text) // 4)


def test_estimate_counts_thinking_and_tool_input():
    thinking = event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "x" * 400}},
    )
    tool_input = event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "y" * 200}},
    )

    reader, _, _ = read_stream(message_start({"input_tokens": 5, "output_tokens": 1}) + thinking + tool_input, [])

    assert reader.estimated_output_tokens() == 150


def test_estimate_is_zero_before_any_content():
    reader, _, _ = read_stream(message_start({"input_tokens": 5, "output_tokens": 1}), [])

    assert reader.usage is None
    assert reader.estimated_output_tokens() == 0


# --- error bodies and the real SDK ---------------------------------------------------------------


def sdk_client(handler) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="mk_test",
        base_url="http://proxy.test/proxy/anthropic",
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(transport=httpx2.MockTransport(handler)),
    )


@pytest.mark.parametrize(
    ("status", "error_type", "code", "exception"),
    [
        (400, "invalid_request_error", None, anthropic.BadRequestError),
        (401, "authentication_error", None, anthropic.AuthenticationError),
        (403, "permission_error", None, anthropic.PermissionDeniedError),
        (429, "budget_exceeded", "account_budget", anthropic.RateLimitError),
        (429, "rate_limit_exceeded", None, anthropic.RateLimitError),
        (502, "api_error", None, anthropic.InternalServerError),
    ],
)
def test_error_bodies_raise_the_sdks_usual_exceptions(status, error_type, code, exception):
    body = ANTHROPIC.error_body(status=status, error_type=error_type, message="Denied by Tokonomics.", code=code)
    client = sdk_client(
        lambda request: httpx2.Response(status, content=body, headers={"content-type": "application/json"})
    )

    with pytest.raises(exception) as caught:
        client.messages.create(model="claude-opus-4-5", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])

    error = orjson.loads(body)
    assert error["type"] == "error"
    assert (error["error"]["type"], error["error"]["message"]) == (error_type, "Denied by Tokonomics.")
    assert caught.value.status_code == status
    assert caught.value.type == error_type
    assert caught.value.error_code == code
    assert error["error"].get("code") == code


def test_sdk_assembles_the_forwarded_stream():
    data = fixture("anthropic_messages_stream_cache.sse")
    _, forwarded, _ = read_stream(data, list(range(0, len(data), 61)))
    client = sdk_client(
        lambda request: httpx2.Response(200, content=forwarded, headers={"content-type": "text/event-stream"})
    )

    with client.messages.stream(model="claude-opus-4-5", max_tokens=1024, messages=[]) as stream:
        message = stream.get_final_message()

    assert message.usage.output_tokens == 187
    assert message.usage.cache_read_input_tokens == 12000
    assert (
        message.content[-1].text
        == "Either party may terminate the agreement with 30 days' written notice (Section 14.2)."
    )

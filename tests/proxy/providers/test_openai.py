"""The OpenAI wire format: routes, requests, usage from bodies and streams, error bodies."""

from __future__ import annotations

from pathlib import Path

import httpx2
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.providers import WIRE_FORMATS, Operation, ProviderError, RequestInfo
from proxy.providers.openai import OpenAIWireFormat, chat_usage
from proxy.usage import TokenUsage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sse"
OPENAI = WIRE_FORMATS["openai"]

STREAMS = {
    "openai_chat_stream_include_usage": (
        Operation.CHAT,
        "gpt-4o-mini-2024-07-18",
        TokenUsage(input_tokens=24, output_tokens=7),
    ),
    "openai_chat_stream_usage_on_last_choice": (
        Operation.CHAT,
        "mistral-small-latest",
        TokenUsage(input_tokens=12, output_tokens=24),
    ),
    "openai_chat_stream_reasoning_cached": (
        Operation.CHAT,
        "o4-mini-2025-04-16",
        TokenUsage(input_tokens=1420, output_tokens=340, cached_input_tokens=1280, reasoning_tokens=320),
    ),
    "openai_responses_stream": (
        Operation.RESPONSES,
        "o4-mini-2025-04-16",
        TokenUsage(input_tokens=1342, output_tokens=215, cached_input_tokens=1024, reasoning_tokens=128),
    ),
}
# Streams whose usage chunk is the one stream_options.include_usage adds ("choices": []).
INJECTED_USAGE_STREAMS = ["openai_chat_stream_include_usage", "openai_chat_stream_reasoning_cached"]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def stream_info(operation: Operation, *, strip: bool) -> RequestInfo:
    return RequestInfo(
        operation=operation,
        model="",
        stream=True,
        max_output_tokens=None,
        estimated_input_tokens=0,
        body=b"{}",
        strip_usage_chunk=strip,
    )


def read_stream(operation: Operation, data: bytes, cuts: list[int], *, strip: bool = False):
    """Feed `data` split at `cuts`; return (reader, forwarded bytes, what each feed returned)."""
    reader = OPENAI.stream_reader(stream_info(operation, strip=strip))
    bounds = [0, *sorted(set(cuts)), len(data)]
    returned = [reader.feed(data[start:end]) for start, end in zip(bounds, bounds[1:], strict=False)]
    closing = reader.close()
    return reader, b"".join(returned) + closing, returned


def without_usage_chunk(data: bytes, newline: bytes = b"\n") -> bytes:
    separator = newline * 2
    events = data.split(separator)
    kept = [event for event in events if b'"choices":[],"usage":{' not in event]
    assert len(kept) == len(events) - 1
    return separator.join(kept)


# --- routes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/chat/completions", Operation.CHAT),
        ("POST", "/v1/chat/completions", Operation.CHAT),
        ("post", "/chat/completions/", Operation.CHAT),
        ("POST", "/chat/completions?api-version=2024-10-21", Operation.CHAT),
        ("POST", "/completions", Operation.COMPLETIONS),
        ("POST", "/responses", Operation.RESPONSES),
        ("POST", "/v1/responses", Operation.RESPONSES),
        ("POST", "/embeddings", Operation.EMBEDDINGS),
        ("POST", "/v1/embeddings", Operation.EMBEDDINGS),
        ("GET", "/models", None),
        ("GET", "/chat/completions", None),
        ("GET", "/responses/resp_123", None),
        ("POST", "/responses/resp_123/cancel", None),
        ("POST", "/responses/input_tokens", None),
        ("POST", "/files", None),
        ("POST", "/batches", None),
        ("POST", "/fine_tuning/jobs", None),
        ("POST", "/realtime/sessions", None),
        ("POST", "/audio/transcriptions", None),
        ("POST", "/images/generations", None),
        ("POST", "/chat/completions/chatcmpl-123", None),
    ],
)
def test_routes_metered_operations_and_nothing_else(method, path, operation):
    assert OPENAI.operation_for(method, path) is operation


def test_registry_names_every_wire_format_an_endpoint_may_have():
    from proxy import catalog

    assert set(WIRE_FORMATS) == set(catalog.WIRE_FORMATS) >= {"openai", "anthropic", "gemini", "azure-openai"}
    assert isinstance(WIRE_FORMATS["openai"], OpenAIWireFormat)
    assert all(wire_format.name == name for name, wire_format in WIRE_FORMATS.items())


# --- requests --------------------------------------------------------------------------------------


def test_asks_for_usage_on_a_stream_that_did_not():
    body = orjson.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})

    info = OPENAI.parse_request(Operation.CHAT, body)

    assert info.strip_usage_chunk is True
    assert orjson.loads(info.body) == {**orjson.loads(body), "stream_options": {"include_usage": True}}
    assert (info.model, info.stream) == ("gpt-4o-mini", True)


def test_injection_keeps_the_clients_other_stream_options():
    body = orjson.dumps(
        {"model": "gpt-4o", "stream": True, "stream_options": {"include_obfuscation": False}, "messages": []}
    )

    info = OPENAI.parse_request(Operation.CHAT, body)

    assert info.strip_usage_chunk is True
    assert orjson.loads(info.body)["stream_options"] == {"include_obfuscation": False, "include_usage": True}


@pytest.mark.parametrize("options", [None, {"include_usage": False}])
def test_injection_overrides_null_or_false_include_usage(options):
    body = orjson.dumps({"model": "gpt-4o", "stream": True, "stream_options": options, "messages": []})

    info = OPENAI.parse_request(Operation.CHAT, body)

    assert info.strip_usage_chunk is True
    assert orjson.loads(info.body)["stream_options"]["include_usage"] is True


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        (Operation.CHAT, {"model": "m", "stream": True, "stream_options": {"include_usage": True}, "messages": []}),
        (Operation.CHAT, {"model": "m", "messages": []}),
        (Operation.CHAT, {"model": "m", "stream": False, "messages": []}),
        (Operation.RESPONSES, {"model": "m", "stream": True, "input": "Hi"}),
        (Operation.EMBEDDINGS, {"model": "m", "input": "Hi"}),
    ],
)
def test_body_is_untouched_when_nothing_needs_injecting(operation, payload):
    body = orjson.dumps(payload)

    info = OPENAI.parse_request(operation, body)

    assert info.body is body
    assert info.strip_usage_chunk is False


def test_legacy_completions_streams_get_usage_injected_too():
    info = OPENAI.parse_request(
        Operation.COMPLETIONS, b'{"model": "gpt-3.5-turbo-instruct", "prompt": "Hi", "stream": true}'
    )

    assert info.strip_usage_chunk is True
    assert orjson.loads(info.body)["stream_options"] == {"include_usage": True}


def test_injection_can_be_turned_off_for_servers_that_reject_stream_options():
    body = b'{"model": "m", "stream": true, "messages": []}'

    info = OPENAI.parse_request(Operation.CHAT, body, inject_stream_usage=False)

    assert (info.body, info.strip_usage_chunk) == (body, False)


def test_spliced_body_keeps_the_clients_bytes():
    body = b'  {"model": "gpt-4o",  "stream": true, "messages": [{"role": "user", "content": "caf\\u00e9"}]}'

    info = OPENAI.parse_request(Operation.CHAT, body)

    assert info.body == b'  {"stream_options":{"include_usage":true},' + body[3:]


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'{"model": "m",}', b"\xff\xfe"])
def test_invalid_json_is_a_400(body):
    with pytest.raises(ProviderError) as caught:
        OPENAI.parse_request(Operation.CHAT, body)

    assert (caught.value.status, caught.value.error_type) == (400, "invalid_request_error")


@pytest.mark.parametrize("body", [b"[]", b'"hello"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_a_400(body):
    with pytest.raises(ProviderError) as caught:
        OPENAI.parse_request(Operation.CHAT, body)

    assert (caught.value.status, caught.value.error_type) == (400, "invalid_request_error")


def test_model_is_empty_when_absent():
    assert OPENAI.parse_request(Operation.CHAT, b'{"messages": []}').model == ""


@pytest.mark.parametrize(
    ("operation", "payload", "expected"),
    [
        (Operation.CHAT, {"max_tokens": 100}, 100),
        (Operation.CHAT, {"max_completion_tokens": 300, "max_tokens": 100}, 300),
        (Operation.CHAT, {"max_completion_tokens": 300, "n": 3}, 900),
        (Operation.CHAT, {}, None),
        (Operation.CHAT, {"max_tokens": "100"}, None),
        (Operation.COMPLETIONS, {"max_tokens": 50, "n": 2, "best_of": 4}, 200),
        (Operation.RESPONSES, {"max_output_tokens": 2048, "max_tokens": 5}, 2048),
        (Operation.EMBEDDINGS, {"input": "x"}, 0),
    ],
)
def test_max_output_tokens_covers_every_choice(operation, payload, expected):
    assert OPENAI.parse_request(operation, orjson.dumps(payload)).max_output_tokens == expected


def estimate(operation: Operation, payload: dict) -> int:
    return OPENAI.parse_request(operation, orjson.dumps(payload)).estimated_input_tokens


def test_chat_estimate_is_text_over_four_plus_message_framing():
    text = "x" * 400  # 100 tokens

    assert estimate(Operation.CHAT, {"messages": [{"role": "user", "content": text}]}) == 100 + 4 + 3
    assert (
        estimate(Operation.CHAT, {"messages": [{"role": "system", "content": text}, {"role": "user", "content": text}]})
        == 200 + 8 + 3
    )


def test_chat_estimate_counts_parts_images_tools_and_tool_calls():
    text_only = estimate(
        Operation.CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 40}]}]}
    )
    with_image = estimate(
        Operation.CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x" * 40},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
                    ],
                }
            ]
        },
    )
    low_detail = estimate(
        Operation.CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}],
                }
            ]
        },
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with_tools = estimate(Operation.CHAT, {"messages": [{"role": "user", "content": "x" * 40}], "tools": tools})
    tool_call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "y" * 400}}
        ],
    }

    assert text_only == 10 + 7
    assert with_image == text_only + 1000  # the image's base64 is not text
    assert low_detail == 85 + 7
    assert with_tools == text_only + -(-len(orjson.dumps(tools)) // 4)
    assert estimate(Operation.CHAT, {"messages": [tool_call]}) >= 100


def test_non_ascii_text_counts_by_utf8_bytes():
    assert estimate(Operation.EMBEDDINGS, {"input": "東京" * 10}) == 15  # 60 bytes


@pytest.mark.parametrize(
    ("embeddings_input", "expected"),
    [
        ("x" * 400, 100),
        (["x" * 40, "y" * 80], 30),
        ([1, 2, 3, 4, 5], 5),
        ([[1, 2, 3], [4, 5]], 5),
    ],
)
def test_embeddings_estimate_takes_every_input_shape(embeddings_input, expected):
    assert estimate(Operation.EMBEDDINGS, {"model": "text-embedding-3-small", "input": embeddings_input}) == expected


def test_responses_estimate_counts_instructions_input_items_and_tools():
    payload = {
        "instructions": "x" * 40,
        "input": [
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "x" * 40}, {"type": "input_image", "image_url": "data:..."}],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "y" * 36},
            {"type": "function_call_output", "call_id": "c1", "output": "z" * 40},
            {"type": "item_reference", "id": "msg_1"},
        ],
    }

    assert estimate(Operation.RESPONSES, payload) == 10 + 10 + 1000 + 10 + 10 + 4 * 5
    assert estimate(Operation.RESPONSES, {"input": "x" * 40}) == 10 + 4


# --- usage from bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_streamed_usage_equals_the_non_streamed_twin(stream_name):
    operation, model, expected = STREAMS[stream_name]
    body_name = stream_name.replace("_stream", "") + ".json"
    data = fixture(stream_name + ".sse")

    reader, _, _ = read_stream(operation, data, [])

    assert OPENAI.usage_from_body(operation, fixture(body_name)) == (expected, model)
    assert (reader.usage, reader.served_model) == (expected, model)


def test_embeddings_usage_is_all_input():
    usage, model = OPENAI.usage_from_body(Operation.EMBEDDINGS, fixture("openai_embeddings.json"))

    assert (usage, model) == (TokenUsage(input_tokens=8), "text-embedding-3-small")


def test_body_without_usage_still_names_the_model():
    assert OPENAI.usage_from_body(Operation.CHAT, b'{"model": "gpt-4o", "choices": []}') == (None, "gpt-4o")


@pytest.mark.parametrize("body", [b"", b"<html>502 Bad Gateway</html>", b"[]", b'{"usage": "lots"}'])
def test_undecodable_bodies_give_no_usage(body):
    assert OPENAI.usage_from_body(Operation.CHAT, body)[0] is None


def test_null_details_count_as_zero():
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }

    assert chat_usage(usage) == TokenUsage(input_tokens=10, output_tokens=5)


def test_deepseek_cache_hits_count_as_cached_input():
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_cache_hit_tokens": 768,
        "prompt_cache_miss_tokens": 232,
    }

    assert chat_usage(usage) == TokenUsage(input_tokens=1000, output_tokens=50, cached_input_tokens=768)


def test_reasoning_left_out_of_completion_tokens_is_added_back():
    # Gemini's OpenAI-compatible endpoint: total = prompt + completion + reasoning.
    usage = {
        "prompt_tokens": 21,
        "completion_tokens": 12,
        "total_tokens": 93,
        "completion_tokens_details": {"reasoning_tokens": 60},
    }

    assert chat_usage(usage) == TokenUsage(input_tokens=21, output_tokens=72, reasoning_tokens=60)


def test_openai_reasoning_is_already_in_completion_tokens():
    usage = {
        "prompt_tokens": 21,
        "completion_tokens": 72,
        "total_tokens": 93,
        "completion_tokens_details": {"reasoning_tokens": 60},
    }

    assert chat_usage(usage) == TokenUsage(input_tokens=21, output_tokens=72, reasoning_tokens=60)


# --- streams ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_pass_through_forwards_every_byte_the_moment_it_arrives(stream_name):
    operation, _, _ = STREAMS[stream_name]
    data = fixture(stream_name + ".sse")
    cuts = list(range(0, len(data), 37))

    reader, forwarded, returned = read_stream(operation, data, cuts)

    bounds = [0, *sorted(set(cuts)), len(data)]
    assert returned == [data[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]
    assert forwarded == data


@pytest.mark.parametrize("stream_name", INJECTED_USAGE_STREAMS)
def test_strip_mode_removes_exactly_the_injected_usage_chunk(stream_name):
    operation, model, expected = STREAMS[stream_name]
    data = fixture(stream_name + ".sse")

    reader, forwarded, _ = read_stream(operation, data, [], strip=True)

    assert forwarded == without_usage_chunk(data)
    assert forwarded.endswith(b"data: [DONE]\n\n")
    assert (reader.usage, reader.served_model) == (expected, model)


def test_strip_mode_forwards_a_usage_chunk_that_has_choices():
    data = fixture("openai_chat_stream_usage_on_last_choice.sse")

    reader, forwarded, _ = read_stream(Operation.CHAT, data, [], strip=True)

    assert forwarded == data
    assert reader.usage == TokenUsage(input_tokens=12, output_tokens=24)


def test_strip_mode_holds_back_only_the_incomplete_event():
    data = fixture("openai_chat_stream_include_usage.sse")
    first_event_end = data.index(b"\n\n") + 2
    reader = OPENAI.stream_reader(stream_info(Operation.CHAT, strip=True))

    assert reader.feed(data[: first_event_end + 10]) == data[:first_event_end]
    assert reader.feed(data[first_event_end + 10 : first_event_end + 20]) == b""


@pytest.mark.parametrize("stream_name", list(STREAMS))
def test_every_two_way_split_reads_the_same_usage(stream_name):
    operation, model, expected = STREAMS[stream_name]
    data = fixture(stream_name + ".sse")
    strip = stream_name in INJECTED_USAGE_STREAMS
    expected_forwarded = without_usage_chunk(data) if strip else data

    for cut in range(1, len(data)):
        reader, forwarded, _ = read_stream(operation, data, [cut], strip=strip)
        assert (reader.usage, reader.served_model) == (expected, model), cut
        assert forwarded == expected_forwarded, cut


@settings(max_examples=150, deadline=None)
@given(
    stream_name=st.sampled_from(list(STREAMS)),
    strip=st.booleans(),
    crlf=st.booleans(),
    cut_fractions=st.lists(st.floats(min_value=0, max_value=1), max_size=40),
)
def test_any_split_and_line_ending_reads_the_same_usage(stream_name, strip, crlf, cut_fractions):
    operation, model, expected = STREAMS[stream_name]
    data = fixture(stream_name + ".sse")
    strip = strip and stream_name in INJECTED_USAGE_STREAMS
    newline = b"\r\n" if crlf else b"\n"
    data = data.replace(b"\n", newline)
    cuts = [int(fraction * len(data)) for fraction in cut_fractions]

    reader, forwarded, _ = read_stream(operation, data, cuts, strip=strip)

    assert (reader.usage, reader.served_model) == (expected, model)
    assert forwarded == (without_usage_chunk(data, newline) if strip else data)


def test_crlf_stream_split_between_cr_and_lf_strips_cleanly():
    data = fixture("openai_chat_stream_include_usage.sse").replace(b"\n", b"\r\n")
    cuts = [index + 1 for index in range(len(data)) if data[index : index + 1] == b"\r"]

    reader, forwarded, _ = read_stream(Operation.CHAT, data, cuts, strip=True)

    assert forwarded == without_usage_chunk(data, b"\r\n")
    assert reader.usage == STREAMS["openai_chat_stream_include_usage"][2]


@pytest.mark.parametrize("stream_name", list(STREAMS))
@pytest.mark.parametrize("strip", [False, True])
def test_a_stream_cut_before_its_usage_is_estimated_from_content(stream_name, strip):
    operation, _, _ = STREAMS[stream_name]
    data = fixture(stream_name + ".sse")
    cut_at = data.index(b'"usage":{')  # mid-event, as when upstream dies

    reader, _, _ = read_stream(operation, data[:cut_at], [len(data) // 3], strip=strip)

    assert reader.usage is None
    assert reader.estimated_output_tokens() > 0


def test_estimate_counts_text_deltas():
    data = fixture("openai_chat_stream_include_usage.sse")

    reader, _, _ = read_stream(Operation.CHAT, data[: data.index(b'"usage":{')], [])

    # "The capital of France is Paris." in 7 deltas: 31 bytes -> 8 tokens.
    assert reader.estimated_output_tokens() == 8


def test_estimate_counts_tool_call_arguments():
    data = fixture("openai_chat_stream_reasoning_cached.sse")

    reader, _, _ = read_stream(Operation.CHAT, data[: data.index(b'"usage":{')], [])

    # "get_weather" and the arguments as sent, escaped: {\"city\":\"Paris\",...} — 52 bytes.
    assert reader.estimated_output_tokens() == 13


def test_estimate_counts_reasoning_content():
    chunk = (
        b'data: {"id":"1","object":"chat.completion.chunk","model":"deepseek-reasoner",'
        b'"choices":[{"index":0,"delta":{"reasoning_content":"' + b"x" * 400 + b'"},"finish_reason":null}]}\n\n'
    )

    reader, _, _ = read_stream(Operation.CHAT, chunk, [])

    assert reader.estimated_output_tokens() == 100
    assert reader.served_model == "deepseek-reasoner"


def test_estimate_is_zero_before_any_content():
    data = fixture("openai_chat_stream_include_usage.sse")

    reader, _, _ = read_stream(Operation.CHAT, data[: data.index(b"\n\n") + 2], [])

    assert reader.usage is None
    assert reader.estimated_output_tokens() == 0


def test_escaped_quotes_inside_content_do_not_end_it():
    chunk = b'data: {"model":"m","choices":[{"index":0,"delta":{"content":"say \\"usage\\": {}"}}]}\n\n'

    reader, forwarded, _ = read_stream(Operation.CHAT, chunk, [], strip=True)

    assert forwarded == chunk
    assert reader.usage is None
    assert reader.estimated_output_tokens() == 5  # 19 escaped bytes


def test_groq_usage_in_x_groq_is_read():
    chunk = (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama-3.3-70b-versatile",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"x_groq":{"id":"req_1","usage":{"prompt_tokens":40,"completion_tokens":9,"total_tokens":49}}}\n\n'
        b"data: [DONE]\n\n"
    )

    reader, forwarded, _ = read_stream(Operation.CHAT, chunk, [], strip=True)

    assert reader.usage == TokenUsage(input_tokens=40, output_tokens=9)
    assert forwarded == chunk


def test_usage_with_spaces_after_colons_is_found():
    chunk = (
        b'data: {"model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n'
        b"data: [DONE]\n\n"
    )

    reader, forwarded, _ = read_stream(Operation.CHAT, chunk, [5], strip=True)

    assert reader.usage == TokenUsage(input_tokens=3, output_tokens=2)
    assert forwarded == b"data: [DONE]\n\n"


@pytest.mark.parametrize("terminal", ["response.incomplete", "response.failed"])
def test_responses_usage_from_incomplete_or_failed(terminal):
    event = orjson.dumps(
        {
            "type": terminal,
            "sequence_number": 9,
            "response": {
                "id": "resp_1",
                "model": "gpt-4.1-2025-04-14",
                "status": terminal.split(".")[1],
                "usage": {
                    "input_tokens": 50,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 16,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 66,
                },
            },
        }
    )
    data = b"event: " + terminal.encode() + b"\ndata: " + event + b"\n\n"

    reader, _, _ = read_stream(Operation.RESPONSES, data, [])

    assert (reader.usage, reader.served_model) == (TokenUsage(input_tokens=50, output_tokens=16), "gpt-4.1-2025-04-14")


def test_unterminated_last_event_is_still_read():
    data = fixture("openai_chat_stream_include_usage.sse")
    data = data[: data.rindex(b"data: [DONE]")].rstrip(b"\n")

    reader, forwarded, _ = read_stream(Operation.CHAT, data, [], strip=True)

    assert reader.usage == STREAMS["openai_chat_stream_include_usage"][2]
    assert b'"usage":{' not in forwarded


def test_long_streams_are_read_in_batches_with_the_same_result():
    events = fixture("openai_chat_stream_include_usage.sse").split(b"\n\n")
    content_event = events[1] + b"\n\n"
    data = events[0] + b"\n\n" + content_event * 2000 + b"\n\n".join(events[-3:])

    reader, forwarded, _ = read_stream(Operation.CHAT, data, list(range(0, len(data), 1000)))

    assert forwarded == data
    assert reader.usage == STREAMS["openai_chat_stream_include_usage"][2]
    assert reader.estimated_output_tokens() == 2000  # one token a delta ("The")


# --- error bodies and the real SDK ---------------------------------------------------------------


def sdk_client(handler) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="mk_test",
        base_url="http://proxy.test/proxy/openai",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=httpx2.MockTransport(handler)),
    )


@pytest.mark.parametrize(
    ("status", "error_type", "code", "exception"),
    [
        (400, "invalid_request_error", None, openai.BadRequestError),
        (401, "authentication_error", None, openai.AuthenticationError),
        (403, "permission_error", None, openai.PermissionDeniedError),
        (429, "budget_exceeded", "tenant_budget", openai.RateLimitError),
        (503, "service_unavailable", None, openai.InternalServerError),
    ],
)
def test_error_bodies_raise_the_sdks_usual_exceptions(status, error_type, code, exception):
    body = OPENAI.error_body(status=status, error_type=error_type, message="Denied by Tokonomics.", code=code)
    client = sdk_client(
        lambda request: httpx2.Response(status, content=body, headers={"content-type": "application/json"})
    )

    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

    assert (caught.value.status_code, caught.value.type, caught.value.code) == (status, error_type, code)
    assert "Denied by Tokonomics." in caught.value.message
    assert orjson.loads(body) == {
        "error": {"message": "Denied by Tokonomics.", "type": error_type, "param": None, "code": code}
    }


def test_sdk_reads_a_stripped_stream_as_if_no_proxy_were_there():
    data = fixture("openai_chat_stream_include_usage.sse")
    _, forwarded, _ = read_stream(Operation.CHAT, data, list(range(0, len(data), 50)), strip=True)
    client = sdk_client(
        lambda request: httpx2.Response(200, content=forwarded, headers={"content-type": "text/event-stream"})
    )

    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True))

    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "The capital of France is Paris."

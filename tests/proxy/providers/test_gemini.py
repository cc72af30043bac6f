"""The Gemini wire format: routes, requests, usage from bodies and streams, error bodies, and the key's way in."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.directory import EndpointEntry
from proxy.headers import presented_key, upstream_headers, upstream_query
from proxy.providers import WIRE_FORMATS, Operation, ProviderError
from proxy.providers.gemini import usage_metadata_usage
from proxy.usage import TokenUsage

GEMINI = WIRE_FORMATS["gemini"]
KEY = "mk_live_0123456789abcdefghijklmnopqrstuvwx"
ENDPOINT = EndpointEntry("gemini-native", "gemini", "https://generativelanguage.googleapis.com", "google", "AIza-cred")


@pytest.mark.parametrize(
    ("method", "path", "operation", "free"),
    [
        ("POST", "/v1beta/models/gemini-2.5-pro:generateContent", Operation.GENERATE_CONTENT, None),
        ("POST", "/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse", Operation.GENERATE_CONTENT, None),
        ("POST", "/models/gemini-2.5-pro:streamGenerateContent", Operation.GENERATE_CONTENT, None),
        ("POST", "/v1beta/models/gemini-2.5-pro:GENERATECONTENT", Operation.GENERATE_CONTENT, None),
        ("POST", "/v1beta/models/gemini-embedding-001:embedContent", Operation.EMBEDDINGS, None),
        ("POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents", Operation.EMBEDDINGS, None),
        ("POST", "/v1beta/models/gemini-2.5-pro:countTokens", None, "count_tokens"),
        ("GET", "/v1beta/models", None, "models"),
        ("GET", "/v1beta/models/gemini-2.5-pro?pageSize=5", None, "models"),
        ("GET", "/v1beta/models/gemini-2.5-pro:generateContent", None, None),
        ("POST", "/v1beta/models/a:countTokens:generateContent", None, None),
        ("POST", "/v1beta/models/a:generateContent:countTokens", None, None),
        ("POST", "/v1beta/models/a/b:generateContent", None, None),
        ("POST", "/v1beta/tunedModels/mine:generateContent", None, None),
        ("POST", "/v1beta/cachedContents", None, None),
        ("POST", "/v1beta/models/gemini-2.5-pro:predict", None, None),
        ("POST", "/v1beta/v1beta/models/gemini-2.5-pro:generateContent", None, None),
    ],
)
def test_routes(method, path, operation, free):
    assert GEMINI.operation_for(method, path) is operation
    assert GEMINI.free_operation(method, path) == free


@pytest.mark.parametrize(("path", "refused"), [
    ("/v1beta/models/a:countTokens:generateContent", True),
    ("/v1beta/models/a:generateContent:countTokens", True),
    ("/v1beta/models/a::generateContent", True),
    ("/v1beta/models/a:generateContent", False),
    ("/v1beta/x:y/models/a:generateContent", False),  # only the last segment names a method
    ("/v1beta/models", False),
])
def test_a_second_colon_in_the_last_segment_is_an_invalid_path(path, refused):
    assert (GEMINI.path_problem(path) is not None) is refused
    assert WIRE_FORMATS["openai"].path_problem(path) is None


def generate(body: dict, path: str = "/v1beta/models/gemini-2.5-pro:generateContent"):
    return GEMINI.request_info(Operation.GENERATE_CONTENT, orjson.dumps(body), path=path)


def test_the_model_comes_from_the_path_and_the_body_is_kept():
    body = orjson.dumps({"contents": [{"parts": [{"text": "Hello"}]}], "model": "gemini-1.0-cheap"})
    info = GEMINI.request_info(Operation.GENERATE_CONTENT, body,
                               path="/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert (info.model, info.stream, info.body) == ("gemini-2.5-flash", True, body)
    assert info.estimated_input_tokens == 2 + 4  # "Hello" (5 bytes) and the turn


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, None),
        ({"maxOutputTokens": 100}, 100),
        ({"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": 1024}}, 1124),
        ({"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": -1}}, 100),
        ({"thinkingConfig": {"thinkingBudget": 1024}}, None),  # no limit: the model's ceiling
        ({"maxOutputTokens": 100, "candidateCount": 3}, 300),
        ({"max_output_tokens": 50, "maxOutputTokens": 10}, 50),  # both spellings: the larger
        ({"maxOutputTokens": True}, None),
    ],
)
def test_the_output_bound_counts_thinking_and_candidates(config, expected):
    assert generate({"contents": [], "generationConfig": config}).max_output_tokens == expected


def test_snake_case_generation_config_is_read_too():
    assert generate({"contents": [], "generation_config": {"max_output_tokens": 7}}).max_output_tokens == 7


def test_input_estimate_reads_system_contents_media_and_tools():
    info = generate({
        "systemInstruction": {"parts": [{"text": "x" * 40}]},
        "contents": [{"role": "user", "parts": [{"text": "y" * 400}, {"inlineData": {"mimeType": "image/png",
                                                                                     "data": "AAAA" * 1000}}]}],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
    })
    tools = len(orjson.dumps([{"functionDeclarations": [{"name": "f"}]}]))
    assert info.estimated_input_tokens == 1000 + 4 + 4 + -(-(40 + 400 + tools) // 4)


def test_embeddings_estimate_every_request_and_no_output():
    body = orjson.dumps({"requests": [{"content": {"parts": [{"text": "abcd"}]}},
                                      {"content": {"parts": [{"text": "efgh"}]}}]})
    info = GEMINI.request_info(Operation.EMBEDDINGS, body, path="/v1/models/gemini-embedding-001:batchEmbedContents")
    assert (info.model, info.max_output_tokens, info.estimated_input_tokens) == ("gemini-embedding-001", 0, 2)


@pytest.mark.parametrize("body", [b"", b"[]", b"{", b"\x00"])
def test_invalid_json_is_a_400(body):
    with pytest.raises(ProviderError) as caught:
        GEMINI.request_info(Operation.GENERATE_CONTENT, body, path="/models/m:generateContent")
    assert caught.value.status == 400


METADATA = {"promptTokenCount": 1200, "candidatesTokenCount": 30, "cachedContentTokenCount": 1000,
            "thoughtsTokenCount": 70, "toolUsePromptTokenCount": 5, "totalTokenCount": 1305}
USAGE = TokenUsage(input_tokens=1205, output_tokens=100, cached_input_tokens=1000, reasoning_tokens=70)


def test_usage_metadata_normalises_as_genai_prices_reads_it():
    assert usage_metadata_usage(METADATA) == USAGE
    assert usage_metadata_usage({"promptTokenCount": 5, "cachedContentTokenCount": 9}).cached_input_tokens == 5
    assert usage_metadata_usage({"promptTokenCount": -5, "candidatesTokenCount": "7"}) == TokenUsage()


def test_usage_from_a_body_and_from_a_json_array_stream():
    body = orjson.dumps({"candidates": [], "usageMetadata": METADATA, "modelVersion": "gemini-2.5-pro-001"})
    assert GEMINI.usage_from_body(Operation.GENERATE_CONTENT, body) == (USAGE, "gemini-2.5-pro-001")
    array = orjson.dumps([{"usageMetadata": {"promptTokenCount": 1200}, "modelVersion": "v"},
                          {"candidates": []}, {"usageMetadata": METADATA}])
    assert GEMINI.usage_from_body(Operation.GENERATE_CONTENT, array) == (USAGE, "v")
    assert GEMINI.usage_from_body(Operation.GENERATE_CONTENT, b"<html>") == (None, None)
    assert GEMINI.usage_from_body(Operation.EMBEDDINGS, b'{"embeddings": []}') == (None, None)


WORDS = ["Hello", " there", ' "usageMetadata": {"promptTokenCount": 1}', " friend"]


def sse_stream(separator: bytes = b"\r\n\r\n") -> bytes:
    chunks = []
    for index, word in enumerate(WORDS):
        usage = {"promptTokenCount": 1200, "candidatesTokenCount": index + 1, "totalTokenCount": 1201 + index}
        if index == 3:
            usage = METADATA
        candidate = {"content": {"parts": [{"text": word}]}, **({"finishReason": "STOP"} if index == 3 else {})}
        chunks.append(b"data: " + orjson.dumps({"candidates": [candidate], "usageMetadata": usage,
                                                "modelVersion": "gemini-2.5-pro"}) + separator)
    return b"".join(chunks)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), separator=st.sampled_from([b"\r\n\r\n", b"\n\n"]))
def test_streams_pass_through_untouched_and_the_last_usage_wins(data, separator):
    stream = sse_stream(separator)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = GEMINI.stream_reader(generate({"contents": []}))
    bounds = [0, *cuts, len(stream)]
    forwarded = [reader.feed(stream[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert b"".join(forwarded) + reader.close() == stream
    assert reader.usage == USAGE and reader.served_model == "gemini-2.5-pro"


@pytest.mark.parametrize("finish", [b'"finishReason": "MAX_TOKENS"', b'"finishReason":"SAFETY"'])
def test_the_usage_so_far_is_final_once_a_chunk_finishes(finish):
    reader = GEMINI.stream_reader(generate({"contents": []}))
    reader.feed(b'data: {"candidates": [{"content": {"parts": [{"text": "ab"}]}}], "usageMetadata": '
                b'{"promptTokenCount": 9, "candidatesTokenCount": 1}}\r\n\r\n')
    assert reader.usage is None
    reader.feed(b'data: {"candidates": [{' + finish + b'}]}\r\n\r\n')  # the finish, without usage
    reader.close()
    assert reader.usage == TokenUsage(input_tokens=9, output_tokens=1)


def test_a_blocked_prompt_finishes_with_its_prompt_usage():
    reader = GEMINI.stream_reader(generate({"contents": []}))
    reader.feed(b'data: {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7}}'
                b'\r\n\r\n')
    reader.close()
    assert reader.usage == TokenUsage(input_tokens=7)


@pytest.mark.parametrize("form", ["sse", "json"])
def test_a_stream_cut_before_it_finishes_is_an_estimate_from_the_usage_last_seen(form):
    stream = sse_stream() if form == "sse" else json_array_stream()
    cut = stream.rindex(b'"text"')  # before the last chunk, the finishing one
    reader = GEMINI.stream_reader(generate({"contents": []}))
    reader.feed(stream[:cut])
    reader.close()
    counted = -(-sum(len(orjson.dumps(word)) - 2 for word in WORDS[:3]) // 4)  # the text seen, escaped
    assert reader.usage is None and reader.estimated_output_tokens() == max(counted, 3) > 3


def test_a_stream_cut_before_usage_counts_its_text():
    reader = GEMINI.stream_reader(generate({"contents": []}))
    reader.feed(b'data: {"candidates": [{"content": {"parts": [{"text": "abcdefgh"}]}}]}\r\n\r\n')
    reader.close()
    assert reader.usage is None and reader.estimated_output_tokens() == 2


@pytest.mark.parametrize(("status", "name"), [(400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"),
                                              (403, "PERMISSION_DENIED"), (413, "INVALID_ARGUMENT"),
                                              (429, "RESOURCE_EXHAUSTED"), (502, "UNAVAILABLE"),
                                              (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")])
def test_error_bodies_are_googles(status, name):
    body = orjson.loads(GEMINI.error_body(status=status, error_type="budget_exceeded", message="No.",
                                          code="key_budget"))
    assert body["error"]["code"] == status and body["error"]["status"] == name and body["error"]["message"] == "No."
    assert body["error"]["details"][0]["metadata"] == {"type": "budget_exceeded", "code": "key_budget"}


# --- the key: in as google-genai sends it, out as the account's credential only ---------------------

@pytest.mark.parametrize(
    ("headers", "query", "found"),
    [
        ({b"x-goog-api-key": KEY.encode()}, b"", KEY),
        ({}, f"alt=sse&key={KEY}".encode(), KEY),
        ({}, f"k%65y={KEY}".encode(), KEY),  # decoded, as Google would decode it
        ({b"x-goog-api-key": b"AIza-their-own"}, f"key={KEY}".encode(), KEY),
        ({b"authorization": f"Bearer {KEY}".encode(), b"x-goog-api-key": b"AIza"}, b"", KEY),
        ({b"x-goog-api-key": b"AIza-their-own"}, b"", "AIza-their-own"),  # refused later: not ours
        ({}, b"alt=sse", ""),
    ],
)
def test_presented_key(headers, query, found):
    assert presented_key(headers, query) == found


@pytest.mark.parametrize(
    ("query", "forwarded"),
    [
        (b"alt=sse", b"alt=sse"),
        (f"alt=sse&key={KEY}".encode(), b"alt=sse"),
        (f"k%65y={KEY}&alt=sse".encode(), b"alt=sse"),
        (b"key=AIza-their-own&pageSize=5", b"pageSize=5"),  # the endpoint's credential goes in the header
        (b"", b""),
    ],
)
def test_no_key_parameter_goes_to_google(query, forwarded):
    assert upstream_query(query, ENDPOINT) == forwarded


def test_other_formats_keep_their_key_parameters_but_never_ours():
    openai = EndpointEntry("vllm", "openai", "http://vllm", "", "")
    assert upstream_query(b"key=abc", openai) == b"key=abc"
    assert upstream_query(f"key={KEY}&a=1".encode(), openai) == b"a=1"


@pytest.mark.parametrize("wire", ["gemini", "openai", "anthropic"])
@pytest.mark.parametrize("query", [f"KEY={KEY}", f"api_key={KEY}", f"x=%6D%6B_{KEY[3:]}", f"token={KEY}%20"])
def test_our_key_never_goes_upstream_in_any_parameter(wire, query):
    endpoint = EndpointEntry("e", wire, "http://upstream", "", "")
    assert upstream_query(f"alt=sse&{query}&n=1".encode(), endpoint) == b"alt=sse&n=1"


def test_the_credential_goes_in_x_goog_api_key_and_our_key_nowhere():
    out = upstream_headers({b"x-goog-api-key": KEY.encode(), b"authorization": f"Bearer {KEY}".encode(),
                            b"content-type": b"application/json"}, ENDPOINT)
    assert out["x-goog-api-key"] == "AIza-cred" and KEY not in str(out) and "authorization" not in out


def json_array_stream() -> bytes:
    elements = []
    for index, word in enumerate(WORDS):
        usage = METADATA if index == 3 else {"promptTokenCount": 1200, "candidatesTokenCount": index + 1,
                                             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}]}
        element = {"candidates": [{"content": {"parts": [{"text": word}]}}], "usageMetadata": usage,
                   "modelVersion": "gemini-2.5-pro"}
        elements.append(orjson.dumps(element, option=orjson.OPT_INDENT_2))  # Google's spacing
    return b"[" + b",\r\n".join(elements) + b"]"


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_json_array_streams_pass_through_as_they_arrive_and_the_last_usage_wins(data):
    stream = json_array_stream()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    reader = GEMINI.stream_reader(generate({"contents": []}))
    bounds = [0, *cuts, len(stream)]
    forwarded = [reader.feed(stream[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert forwarded == [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]  # nothing held back
    assert reader.close() == b""
    assert reader.usage == USAGE and reader.served_model == "gemini-2.5-pro"


def test_a_json_array_stream_cut_estimates_from_the_last_whole_usage():
    stream = json_array_stream()
    cut = stream.rindex(b'"promptTokenCount": 1200') + 10  # inside the final usageMetadata
    reader = GEMINI.stream_reader(generate({"contents": []}))
    reader.feed(stream[:cut])
    reader.close()
    # Every text was seen (the cut is past the last one), and counts for more than the usage last seen.
    assert reader.usage is None and reader.estimated_output_tokens() == -(-sum(
        len(orjson.dumps(word)) - 2 for word in WORDS) // 4)


@pytest.mark.parametrize(("content_type", "status", "stream", "streams"), [
    ("text/event-stream", 200, True, True),
    ("application/json", 200, True, True),
    ("application/json", 429, True, False),  # an error is read whole, and costs nothing
    ("application/json", 200, False, False),
])
def test_which_answers_are_relayed_as_streams(content_type, status, stream, streams):
    path = "/v1/models/m:streamGenerateContent" if stream else "/v1/models/m:generateContent"
    info = generate({"contents": []}, path=path)
    assert GEMINI.streams(info, content_type=content_type, status=status) is streams

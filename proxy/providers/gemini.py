"""The Gemini wire format: Google's own Generative Language API, as the `google-genai` SDK speaks it.

Routes (after an optional version segment: google-genai sends `/v1beta`, recent releases `/v1`):
`POST /models/{model}:generateContent`,
`:streamGenerateContent` (`?alt=sse` streams server-sent events; without it the answer is one JSON array),
`:embedContent` and `:batchEmbedContents` are metered; `:countTokens` and `GET /models[/{model}]` are free.
The model is named by the path, never the body. A last segment holding a second `:` is refused (400
invalid_path) whatever the account allows: the proxy cannot know which method Google would read from it.

Usage normalisation (CONTRACT §4), as genai-prices' own Google extractor reads `usageMetadata`:
input = promptTokenCount (cached content included) + toolUsePromptTokenCount; cached = cachedContentTokenCount;
output = candidatesTokenCount + thoughtsTokenCount; reasoning = thoughtsTokenCount. A stream restates the
usage so far in its chunks; the last chunk carrying `usageMetadata` wins, nothing is summed, and it is the
call's usage once the stream has finished (see GenerateContentStreamReader). Prices, long-context tiers
included (gemini-2.5-pro above 200k input tokens), come from the catalogue like any other call's.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from proxy.providers.base import (
    MEDIA_TOKENS,
    InputEstimate,
    Operation,
    RequestInfo,
    StreamReader,
    WireFormat,
    count,
    decode_json_object,
    events_containing,
    json_string_pattern,
    load_json_object,
    sse_json_object,
)
from proxy.usage import TokenUsage

from ..usage_bounds import MAX_ESTIMATE_TOKENS, MAX_TOKENS

CONTENT_TOKENS = 4  # per turn, as chat formats count a message
# `/{version}/models/{model}:{method}`: the model is one segment without ":" (a second ":" matches nothing).
_MODEL_CALL = re.compile(r"(?:/v1(?:alpha|beta)?)?/models/([^/:]+):([A-Za-z]+)")
_MODEL_LISTING = re.compile(r"(?:/v1(?:alpha|beta)?)?/models(?:/[^/:]+)?")
_METHODS: dict[str, Operation] = {
    "generatecontent": Operation.GENERATE_CONTENT,
    "streamgeneratecontent": Operation.GENERATE_CONTENT,
    "embedcontent": Operation.EMBEDDINGS,
    "batchembedcontents": Operation.EMBEDDINGS,
}
_FREE_METHODS = {"counttokens": "count_tokens"}
# google.rpc.Code names, by HTTP status, as Google's own errors carry them.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "NOT_IMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


def _route(path: str) -> str:
    return path.partition("?")[0].rstrip("/")


def model_call(path: str) -> tuple[str, str] | None:
    """(model, method in lower case) of `/…/models/{model}:{method}`, None for any other path."""
    match = _MODEL_CALL.fullmatch(_route(path))
    return None if match is None else (match.group(1), match.group(2).lower())


def usage_metadata_usage(metadata: dict[str, Any]) -> TokenUsage:
    """Normalise a `usageMetadata` object."""
    thoughts = count(metadata, "thoughtsTokenCount")
    prompt = count(metadata, "promptTokenCount")
    return TokenUsage(
        input_tokens=min(prompt + count(metadata, "toolUsePromptTokenCount"), MAX_TOKENS),
        output_tokens=min(count(metadata, "candidatesTokenCount") + thoughts, MAX_TOKENS),
        cached_input_tokens=min(count(metadata, "cachedContentTokenCount"), prompt),
        reasoning_tokens=thoughts,
    )


def _usage_of(payload: dict[str, Any]) -> tuple[TokenUsage | None, str | None]:
    metadata = payload.get("usageMetadata")
    version = payload.get("modelVersion")
    usage = usage_metadata_usage(metadata) if isinstance(metadata, dict) else None
    return usage, version if isinstance(version, str) else None


# --- request ---------------------------------------------------------------------------------------


def _add_part(estimate: InputEstimate, part: object) -> None:
    if not isinstance(part, dict):
        estimate.add_json(part)
        return
    if "text" in part:
        estimate.add_text(part.get("text"))
    elif "inlineData" in part or "inline_data" in part or "fileData" in part or "file_data" in part:
        estimate.add_tokens(MEDIA_TOKENS)
    else:  # functionCall, functionResponse, executableCode…: the model reads them as JSON
        estimate.add_json(part)


def _add_content(estimate: InputEstimate, content: object) -> None:
    if isinstance(content, str):
        estimate.add_text(content)
        return
    if not isinstance(content, dict):
        return
    parts = content.get("parts")
    if isinstance(parts, list):
        for part in parts:
            _add_part(estimate, part)
    estimate.add_tokens(CONTENT_TOKENS)


def _either(payload: dict[str, Any], camel: str, snake: str) -> Any:
    # Google's JSON mapping reads both spellings; the camel one is what the SDK sends.
    return payload.get(camel, payload.get(snake))


def _whole(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _largest(payload: dict[str, Any], camel: str, snake: str) -> int | None:
    """The larger of a field's two spellings: a request sending both must not be estimated by the smaller."""
    values = [v for v in (_whole(payload.get(camel)), _whole(payload.get(snake))) if v is not None]
    return max(values) if values else None


def _max_output_tokens(payload: dict[str, Any]) -> tuple[int | None, int]:
    """(most output tokens, candidates asked for). Thinking tokens are output: a thinking budget is added to
    maxOutputTokens, so the estimate holds whether or not the model counts thoughts inside the limit."""
    config = _either(payload, "generationConfig", "generation_config")
    if not isinstance(config, dict):
        return None, 1
    candidates = max(_largest(config, "candidateCount", "candidate_count") or 1, 1)
    limit = _largest(config, "maxOutputTokens", "max_output_tokens")
    if limit is None:
        return None, candidates
    thinking = _either(config, "thinkingConfig", "thinking_config")
    budget = _largest(thinking, "thinkingBudget", "thinking_budget") if isinstance(thinking, dict) else None
    return min((limit + (budget or 0)) * candidates, MAX_ESTIMATE_TOKENS), candidates


def _estimate_generate_input(payload: dict[str, Any]) -> int:
    estimate = InputEstimate()
    _add_content(estimate, _either(payload, "systemInstruction", "system_instruction"))
    contents = payload.get("contents")
    if isinstance(contents, list):
        for content in contents:
            _add_content(estimate, content)
    else:
        _add_content(estimate, contents)
    estimate.add_json(payload.get("tools"))
    return estimate.tokens()


def _estimate_embed_input(payload: dict[str, Any]) -> int:
    estimate = InputEstimate()
    requests = payload.get("requests")
    for request in requests if isinstance(requests, list) else [payload]:
        if isinstance(request, dict):
            content = request.get("content")
            if isinstance(content, dict) and isinstance(content.get("parts"), list):
                for part in content["parts"]:
                    _add_part(estimate, part)
    return estimate.tokens()


# --- streams ---------------------------------------------------------------------------------------


_MARKERS = (b'"usageMetadata"', b'"finishReason"', b'"blockReason"')  # the keys of events worth decoding


class GenerateContentStreamReader(StreamReader):
    """streamGenerateContent: every chunk is a GenerateContentResponse, most of them restating `usageMetadata`
    so far; nothing is ever removed from the stream.

    With `alt=sse` the chunks are SSE events, and only the last events of a batch are decoded, back to the one
    that reports usage (earlier ones are superseded). Without it Google sends one JSON array, element by
    element: the stream is still passed on as it arrives, and each `"usageMetadata": {…}` is decoded where it
    stands, the bytes from an unfinished one kept until the rest arrives. The first byte says which form it is.

    The usage so far is the call's usage only once the stream has finished: an SSE chunk with a finishReason
    (or a blocked prompt's blockReason), or the array's closing bracket. A stream cut before that is recorded
    as an estimate (CONTRACT §4), its output the larger of the content counted and the usage last seen.
    """

    usage_marker = re.compile(b"|".join(re.escape(marker) for marker in _MARKERS))
    content_pattern = json_string_pattern("text")

    def __init__(self, *, strip_usage_chunk: bool = False) -> None:
        super().__init__(strip_usage_chunk=strip_usage_chunk)
        self._json_array: bool | None = None  # unknown until the first byte that is not white space
        self._pending = b""  # JSON array form: the bytes from the last usage marker not decoded yet
        self._finished = False
        self._array_closed = False

    @property
    def usage(self) -> TokenUsage | None:
        self._catch_up()
        return self._usage if self._finished else None

    def estimated_output_tokens(self) -> int:
        counted = super().estimated_output_tokens()
        return max(counted, self._usage.output_tokens) if self._usage is not None else counted

    def feed(self, chunk: bytes) -> bytes:
        if self._json_array is None and (start := chunk.lstrip()):
            self._json_array = start.startswith(b"[")
        if not self._json_array:
            return super().feed(chunk)
        self._keep(chunk)
        self._read_array_usage(self._pending + chunk)
        if end := chunk.rstrip():
            self._array_closed = end.endswith(b"]")
        self._finished = self._array_closed
        return chunk

    def close(self) -> bytes:
        return b"" if self._json_array else super().close()

    def _read_array_usage(self, buffer: bytes) -> None:
        unfinished = -1
        for match in _USAGE_VALUE.finditer(buffer):
            value = _json_value_at(buffer, match.end())
            if value is None:
                unfinished = match.start()
            else:
                unfinished = -1
                if isinstance(value, dict):
                    self._usage = usage_metadata_usage(value)
        if unfinished >= 0 and len(buffer) - unfinished <= _MAX_PENDING_BYTES:
            self._pending = buffer[unfinished:]
        else:
            # A marker may be cut in two by the chunk boundary: its first part waits for the rest.
            self._pending = buffer[-_MARKER_OVERLAP:]

    def _read_usage_events(self, region: bytes) -> bytes:
        # Backwards from the end, one event at a time, until one reports usage: every chunk restates it, so
        # this is usually the last event alone, found with a few rfind calls rather than a pass over them all.
        end = len(region)
        while end > 0:
            position = max(region.rfind(marker, 0, end) for marker in _MARKERS)
            if position < 0:
                break
            start, stop = events_containing(region, [position])[0]
            if self._read_usage_event(region[start:stop]):
                break
            end = start
        return region

    def _read_usage_event(self, event: bytes) -> bool:
        # True here means "usage found" (this reader never drops an event: see _read_usage_events).
        payload = sse_json_object(event)
        if not payload:
            return False
        if _finishes(payload):
            self._finished = True
        usage, version = _usage_of(payload)
        if version is not None:
            self._served_model = version
        if usage is None:
            return False
        self._usage = usage
        return True

    def _find_served_model(self, region: bytes) -> None:
        match = _MODEL_VERSION.search(region)
        if match:
            self._served_model = match.group(1).decode(errors="replace")


_MODEL_VERSION = json_string_pattern("modelVersion")


def _finishes(payload: dict[str, Any]) -> bool:
    """Whether a chunk ends the answer: a candidate with a finishReason, or a prompt blocked outright."""
    candidates = payload.get("candidates")
    if isinstance(candidates, list) and any(isinstance(c, dict) and c.get("finishReason") for c in candidates):
        return True
    feedback = payload.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))
_USAGE_VALUE = re.compile(rb'"usageMetadata"\s*:\s*')
_MARKER_OVERLAP = 32  # longer than the marker, its colon and some white space
_MAX_PENDING_BYTES = 64 * 1024  # a usageMetadata object is well under 1 KiB: past this it is not one


def _json_value_at(buffer: bytes, position: int) -> object | None:
    """The JSON value starting at `position`, None while it is unfinished (or not JSON)."""
    try:
        value: object = _DECODER.raw_decode(buffer[position:].decode("utf-8", errors="replace"))[0]
    except json.JSONDecodeError:
        return None
    return value


_DECODER = json.JSONDecoder()


class GeminiWireFormat(WireFormat):
    """Google's Gemini API (generativelanguage.googleapis.com), native."""

    name = "gemini"

    def operation_for(self, method: str, path: str) -> Operation | None:
        if method.upper() != "POST":
            return None
        call = model_call(path)
        return None if call is None else _METHODS.get(call[1])

    def path_problem(self, path: str) -> str | None:
        # Google reads the method after a ':' of the last segment; with two, which one it reads is its guess,
        # and a guess must not decide between metered (generateContent) and free (countTokens).
        if _route(path).rpartition("/")[2].count(":") > 1:
            return "more than one ':' in the last segment, which names the method"
        return None

    def free_operation(self, method: str, path: str) -> str | None:
        if method.upper() == "GET" and _MODEL_LISTING.fullmatch(_route(path)):
            return "models"
        call = model_call(path)
        if method.upper() == "POST" and call is not None:
            return _FREE_METHODS.get(call[1])
        return None

    def parse_request(self, operation: Operation, body: bytes) -> RequestInfo:
        return self.request_info(operation, body, path="")

    def request_info(self, operation: Operation, body: bytes, *, path: str) -> RequestInfo:
        payload = load_json_object(body)
        call = model_call(path)
        model, method = call if call is not None else ("", "")
        if operation is Operation.EMBEDDINGS:
            return RequestInfo(operation=operation, model=model, stream=False, max_output_tokens=0,
                               estimated_input_tokens=_estimate_embed_input(payload), body=body)
        max_output_tokens, candidates = _max_output_tokens(payload)
        return RequestInfo(
            operation=operation,
            model=model,
            stream=method == "streamgeneratecontent",
            max_output_tokens=max_output_tokens,
            estimated_input_tokens=_estimate_generate_input(payload),
            body=body,
            choices=candidates,
        )

    def usage_from_body(self, operation: Operation, body: bytes) -> tuple[TokenUsage | None, str | None]:
        payload = decode_json_object(body)
        if payload is not None:
            return _usage_of(payload)
        # streamGenerateContent without alt=sse: one JSON array of the chunks; the last usage wins.
        try:
            chunks = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, None
        usage: TokenUsage | None = None
        served: str | None = None
        for chunk in chunks if isinstance(chunks, list) else ():
            if isinstance(chunk, dict):
                chunk_usage, version = _usage_of(chunk)
                usage, served = chunk_usage or usage, version or served
        return usage, served

    def stream_reader(self, info: RequestInfo) -> StreamReader:
        return GenerateContentStreamReader()

    def streams(self, info: RequestInfo | None, *, content_type: str, status: int) -> bool:
        # streamGenerateContent without alt=sse answers application/json: one array, sent as it is generated.
        return super().streams(info, content_type=content_type, status=status) or (
            info is not None and info.stream and status < 400 and content_type == "application/json")

    def error_body(self, *, status: int, error_type: str, message: str, code: str | None = None) -> bytes:
        # Google's shape, so google-genai raises its usual errors.APIError (ClientError for 4xx); the contract's
        # error type and code ride along as a google.rpc.ErrorInfo, where Google puts its own reasons.
        return orjson.dumps({"error": {
            "code": status,
            "message": message,
            "status": _STATUS_NAMES.get(status, "UNKNOWN" if status >= 500 else "FAILED_PRECONDITION"),
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": (code or error_type).upper(),
                "domain": "tokonomics",
                "metadata": {"type": error_type, **({"code": code} if code is not None else {})},
            }],
        }})


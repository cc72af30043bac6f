"""The Anthropic wire format: the Messages API (POST /v1/messages).

Usage normalisation (CONTRACT §4): input = input_tokens + cache_creation_input_tokens +
cache_read_input_tokens; cached = cache reads; cache writes = cache creation, of which
cache_creation.ephemeral_1h_input_tokens were written at the 1-hour rate.

Streamed, message_start carries the input side (and a token or two of output) and the served
model; each message_delta restates usage CUMULATIVELY: output_tokens always, and on newer API
versions the input and cache fields too. A restated field replaces the earlier value; nothing
is ever summed.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import orjson

from proxy.providers.base import (
    MEDIA_TOKENS,
    FreeRoute,
    InputEstimate,
    Operation,
    RequestInfo,
    StreamReader,
    WireFormat,
    count,
    decode_json_object,
    json_string_pattern,
    load_json_object,
    model_name,
    non_negative_int,
    route_path,
    sse_json_object,
)
from proxy.usage import TokenUsage

MESSAGE_TOKENS = 4
# The system prompt Anthropic adds when a request has tools (documented for tool_choice
# auto / none; "any" and "tool" cost a little less).
TOOL_USE_SYSTEM_TOKENS = 346

_ROUTES: dict[str, Operation] = {"/messages": Operation.MESSAGES}


def messages_usage(usage: dict[str, Any]) -> TokenUsage:
    """Normalise a Messages API `usage` object."""
    uncached = count(usage, "input_tokens")
    cache_write = count(usage, "cache_creation_input_tokens")
    cache_read = count(usage, "cache_read_input_tokens")
    return TokenUsage(
        input_tokens=uncached + cache_write + cache_read,
        output_tokens=count(usage, "output_tokens"),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=count(usage.get("cache_creation"), "ephemeral_1h_input_tokens"),
    )


# --- request ---------------------------------------------------------------------------------------


def _add_document(estimate: InputEstimate, block: dict[str, Any]) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        source = {}
    kind = source.get("type")
    if kind == "text":
        estimate.add_text(source.get("data"))
    elif kind == "content":
        _add_content(estimate, source.get("content"))
    else:  # a PDF, by value or by reference
        estimate.add_tokens(MEDIA_TOKENS)
    estimate.add_text(block.get("title"))
    estimate.add_text(block.get("context"))


def _add_block(estimate: InputEstimate, block: dict[str, Any]) -> None:
    kind = block.get("type")
    if kind == "text":
        estimate.add_text(block.get("text"))
    elif kind == "image":
        estimate.add_tokens(MEDIA_TOKENS)
    elif kind == "document":
        _add_document(estimate, block)
    elif kind in ("tool_use", "server_tool_use"):
        estimate.add_text(block.get("name"))
        estimate.add_json(block.get("input"))
    elif kind == "tool_result":
        _add_content(estimate, block.get("content"))
    elif kind == "thinking":
        estimate.add_text(block.get("thinking"))
    elif kind == "search_result":
        estimate.add_text(block.get("title"))
        _add_content(estimate, block.get("content"))
    elif kind != "redacted_thinking":
        estimate.add_json(block)


def _add_content(estimate: InputEstimate, content: object) -> None:
    """A system prompt, message content or tool result: a string or a list of blocks."""
    if isinstance(content, str):
        estimate.add_text(content)
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                _add_block(estimate, block)


def _estimate_input_tokens(payload: dict[str, Any]) -> int:
    estimate = InputEstimate()
    _add_content(estimate, payload.get("system"))
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                _add_content(estimate, message.get("content"))
        estimate.add_tokens(MESSAGE_TOKENS * len(messages))
    tools = payload.get("tools")
    if isinstance(tools, list) and tools:
        estimate.add_json(tools)
        estimate.add_tokens(TOOL_USE_SYSTEM_TOKENS)
    return estimate.tokens()


# --- streams ---------------------------------------------------------------------------------------


class MessagesStreamReader(StreamReader):
    """Messages streams: usage in message_start and message_delta, found by their event type
    (a content delta that merely mentions them is decoded, found wanting, and left alone)."""

    usage_marker = re.compile(rb"message_(?:start|delta)")
    content_pattern = json_string_pattern("text", "partial_json", "thinking", "name")

    def __init__(self, *, strip_usage_chunk: bool = False) -> None:
        super().__init__(strip_usage_chunk=strip_usage_chunk)
        self._reported: dict[str, Any] = {}

    def _read_usage_event(self, event: bytes) -> bool:
        payload = sse_json_object(event)
        if not payload:
            return False
        kind = payload.get("type")
        if kind == "message_start":
            self._read_message_start(payload.get("message"))
        elif kind == "message_delta":
            self._read_message_delta(payload.get("usage"))
        return False

    def _read_message_start(self, message: object) -> None:
        if not isinstance(message, dict):
            return
        model = message.get("model")
        if isinstance(model, str):
            self._served_model = model
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._reported = dict(usage)

    def _read_message_delta(self, usage: object) -> None:
        if not isinstance(usage, dict):
            return
        # Cumulative: a restated field replaces the earlier value (never add them up), and a
        # field the delta leaves out (or nulls) keeps its message_start value.
        self._reported.update((key, value) for key, value in usage.items() if value is not None)
        self._usage = messages_usage(self._reported)


class AnthropicWireFormat(WireFormat):
    """Anthropic's Messages API."""

    name = "anthropic"
    free_routes: ClassVar[tuple[FreeRoute, ...]] = (
        FreeRoute("GET", "/models", "models"),
        FreeRoute("GET", "/models/", "models"),
        FreeRoute("POST", "/messages/count_tokens", "count_tokens"),
    )

    def operation_for(self, method: str, path: str) -> Operation | None:
        # /v1/messages/batches is not metered here (nor free): refused unless the account allows it.
        if method.upper() != "POST":
            return None
        return _ROUTES.get(route_path(path))

    def parse_request(self, operation: Operation, body: bytes) -> RequestInfo:
        payload = load_json_object(body)
        return RequestInfo(
            operation=operation,
            model=model_name(payload),
            stream=payload.get("stream") is True,
            max_output_tokens=non_negative_int(payload.get("max_tokens")),
            estimated_input_tokens=_estimate_input_tokens(payload),
            body=body,
        )

    def usage_from_body(self, operation: Operation, body: bytes) -> tuple[TokenUsage | None, str | None]:
        payload = decode_json_object(body)
        if payload is None:
            return None, None
        model = payload.get("model")
        served_model = model if isinstance(model, str) else None
        usage = payload.get("usage")
        return (messages_usage(usage) if isinstance(usage, dict) else None), served_model

    def stream_reader(self, info: RequestInfo) -> StreamReader:
        return MessagesStreamReader(strip_usage_chunk=info.strip_usage_chunk)

    def error_body(self, *, status: int, error_type: str, message: str, code: str | None = None) -> bytes:
        error: dict[str, Any] = {"type": error_type, "message": message}
        if code is not None:
            # error.code as the contract names it, and details.error_code, which recent
            # Anthropic SDKs surface as APIStatusError.error_code.
            error["code"] = code
            error["details"] = {"error_code": code}
        return orjson.dumps({"type": "error", "error": error})

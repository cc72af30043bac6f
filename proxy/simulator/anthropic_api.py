"""The fake Anthropic Messages API, in the wire format the `anthropic` SDK parses (field for field
as api.anthropic.com sends them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from .call import Call
from .content import anthropic_input_tokens, reply_deltas, reply_text, reply_word_count, text_tokens
from .errors import JSON, Wire, error_response
from .sse import named_event
from .tools import anthropic_tool_use, argument_deltas, json_text

# The real API writes this one event with a space after the colon.
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
MESSAGE_STOP = named_event("message_stop", {"type": "message_stop"})
MODELS = (
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
)
MODELS_BODY = orjson.dumps({
    "data": [{"type": "model", "id": model, "display_name": name, "created_at": created}
             for model, name, created in MODELS],
    "has_more": False,
    "first_id": MODELS[0][0],
    "last_id": MODELS[-1][0],
})


def missing_field(call: Call, *names: str) -> web.Response | None:
    for name in names:
        if name not in call.payload:
            return error_response(Wire.ANTHROPIC, 400, f"{name}: Field required")
    return None


async def messages(call: Call) -> web.StreamResponse:
    if error := missing_field(call, "model", "max_tokens", "messages"):
        return error
    controls = call.controls
    words = reply_word_count(call.payload.get("max_tokens"), controls.words)
    stop_reason = "max_tokens" if words < controls.words else "end_turn"
    cache_writes = controls.cache_write_tokens + controls.cache_write_1h_tokens
    # input_tokens is only the uncached part: cache reads and writes are counted beside it.
    usage = {
        "input_tokens": anthropic_input_tokens(call.payload),
        "cache_creation_input_tokens": cache_writes,
        "cache_read_input_tokens": controls.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": controls.cache_write_tokens,
            "ephemeral_1h_input_tokens": controls.cache_write_1h_tokens,
        },
        "output_tokens": words,
        "service_tier": "standard",
    }
    block: dict[str, Any] = {"type": "text", "text": reply_text(words, call.controls.reply)}
    if tool_use := anthropic_tool_use(call.payload):
        name, tool_input = tool_use
        block = {"type": "tool_use", "id": call.state.new_id("toolu_01"), "name": name, "input": tool_input}
        stop_reason, usage["output_tokens"] = "tool_use", text_tokens(json_text(tool_input))
    message = {
        "id": call.state.new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if call.streams:
        return await call.stream(_message_events(message, words, call.controls.reply))
    return call.json(message)


def _block_events(block: dict[str, Any], words: int, reply: str | None) -> Iterator[bytes]:
    """One content block streamed: text as text_delta words, a tool's input as input_json_delta pieces."""
    if block["type"] == "tool_use":
        yield named_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                  "content_block": {**block, "input": {}}})
        yield PING
        for piece in ("", *argument_deltas(json_text(block["input"]))):
            yield named_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "input_json_delta", "partial_json": piece}})
        return
    yield named_event("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}})
    yield PING
    for delta in reply_deltas(words, reply):
        yield named_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "text_delta", "text": delta}})


def _message_events(message: dict[str, Any], words: int, reply: str | None) -> Iterator[bytes]:
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    yield named_event("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage,
    }})
    yield from _block_events(message["content"][0], words, reply)
    yield named_event("content_block_stop", {"type": "content_block_stop", "index": 0})
    # message_delta restates the usage so far: output is cumulative, input and cache counts as at the start.
    yield named_event("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "output_tokens": usage["output_tokens"],
        },
    })
    yield MESSAGE_STOP


async def count_tokens(call: Call) -> web.StreamResponse:
    if error := missing_field(call, "model", "messages"):
        return error
    return call.json({"input_tokens": anthropic_input_tokens(call.payload)})


async def list_models(call: Call) -> web.StreamResponse:
    return web.Response(body=MODELS_BODY, content_type=JSON, headers=call.response_headers)


async def retrieve_model(call: Call) -> web.StreamResponse:
    model = call.request.match_info["model"]
    name, created = next(((n, c) for m, n, c in MODELS if m == model), (model, "2025-01-01T00:00:00Z"))
    return call.json({"type": "model", "id": model, "display_name": name, "created_at": created})

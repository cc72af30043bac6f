"""An OpenAI chat completion, as an Anthropic Messages answer: the body, and the stream chunk by chunk
(an Anthropic client served by an OpenAI or OpenAI-compatible model).

Usage: input_tokens = prompt − cached (Anthropic counts cache reads beside the input, not in it),
cache_read_input_tokens = cached, output_tokens = completion. The proxy meters the OpenAI answer
before it is translated (see adapters.py), so these figures are for the client only.

Streamed, OpenAI reports usage only in its last chunk, after the finish reason: `message_start` says
0 input tokens, and `message_delta` (sent at `[DONE]`) restates every count, as Anthropic's newer API
versions do and its SDK reads them.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.providers.base import decode_json_object
from proxy.providers.openai import chat_usage
from proxy.providers.quirks import STREAM_USAGE_PATHS, dig

from .base import StreamTranslator, as_dict, as_list, dumps, json_object, named_event
from .errors import anthropic_error_payload, openai_error_fields

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
MESSAGE_STOP = named_event("message_stop", {"type": "message_stop"})


def stop_reason(finish_reason: object) -> str:
    return STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"


def messages_usage(usage: dict[str, Any]) -> dict[str, int]:
    """An OpenAI-format `usage` as Anthropic's, read the way the proxy meters it (providers/openai.py, with
    the providers' own fields: DeepSeek's cache hits, Perplexity's separate reasoning)."""
    tokens = chat_usage(usage)
    cached = min(tokens.cached_input_tokens, tokens.input_tokens)
    return {"input_tokens": tokens.input_tokens - cached, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached, "output_tokens": tokens.output_tokens}


def chunk_usage(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """A chunk's usage: in `usage`, or where some providers put it instead (Groq: `x_groq.usage`)."""
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        return usage
    return next((found for path in STREAM_USAGE_PATHS if isinstance(found := dig(chunk, path), dict)), None)


def tool_input(arguments: object) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` must be ({} when the model wrote no object)."""
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        value = {}
    return value if isinstance(value, dict) else {}


def completion_to_message(body: bytes) -> bytes:
    completion = json_object(body, "answer")
    choice = as_dict(next(iter(as_list(completion.get("choices"))), {}))
    reply = as_dict(choice.get("message"))
    content: list[dict[str, Any]] = []
    text = reply.get("content") or reply.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in as_list(reply.get("tool_calls")):
        function = as_dict(as_dict(call).get("function"))
        content.append({"type": "tool_use", "id": as_dict(call).get("id"), "name": function.get("name"),
                        "input": tool_input(function.get("arguments"))})
    return dumps({
        "id": completion.get("id"),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": messages_usage(as_dict(completion.get("usage"))),
    })


class ChatToMessagesStream(StreamTranslator):
    """chat.completion.chunk events → Messages events."""

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._ended = False
        self._blocks = 0  # content blocks started
        self._open: int | None = None  # the block being written
        self._open_is_text = False
        self._tool_blocks: dict[int, int] = {}  # tool call index → content block index
        self._stop_reason: str | None = None
        self._usage: dict[str, int] = messages_usage({})

    def _event(self, data: bytes) -> list[bytes]:
        if self._ended:
            return []
        if data.strip() == b"[DONE]":
            return self._finish()
        chunk = decode_json_object(data)
        if chunk is None:
            return []
        if chunk.get("error"):
            self._ended = True
            error_type, message = openai_error_fields(chunk, 500)
            return [named_event("error", anthropic_error_payload(error_type=error_type, message=message))]
        out = [] if self._started else [self._message_start(chunk)]
        self._started = True
        if (usage := chunk_usage(chunk)) is not None:
            self._usage = messages_usage(usage)
        for choice in as_list(chunk.get("choices"))[:1]:  # n > 1 is refused on the way in
            choice = as_dict(choice)
            delta = as_dict(choice.get("delta"))
            for key in ("content", "refusal"):
                if isinstance(delta.get(key), str) and delta[key]:
                    out.extend(self._text(delta[key]))
            for call in as_list(delta.get("tool_calls")):
                out.extend(self._tool_call(as_dict(call)))
            if choice.get("finish_reason"):
                self._stop_reason = stop_reason(choice["finish_reason"])
                out.extend(self._close_block())
        return out

    def _message_start(self, chunk: dict[str, Any]) -> bytes:
        message: dict[str, Any] = {
            "id": chunk.get("id"), "type": "message", "role": "assistant", "model": chunk.get("model"),
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": messages_usage({})}
        return named_event("message_start", {"type": "message_start", "message": message})

    def _open_block(self, block: dict[str, Any], *, text: bool) -> list[bytes]:
        out = self._close_block()
        self._open, self._open_is_text = self._blocks, text
        self._blocks += 1
        out.append(named_event("content_block_start",
                               {"type": "content_block_start", "index": self._open, "content_block": block}))
        return out

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [named_event("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _text(self, text: str) -> list[bytes]:
        out = [] if self._open is not None and self._open_is_text else self._open_block(
            {"type": "text", "text": ""}, text=True)
        out.append(named_event("content_block_delta", {"type": "content_block_delta", "index": self._open,
                                                       "delta": {"type": "text_delta", "text": text}}))
        return out

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        position = call.get("index", 0)
        position = position if isinstance(position, int) else 0
        function = as_dict(call.get("function"))
        out: list[bytes] = []
        if position not in self._tool_blocks:
            out = self._open_block({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                                    "input": {}}, text=False)
            self._tool_blocks[position] = self._blocks - 1
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(named_event("content_block_delta", {
                "type": "content_block_delta", "index": self._tool_blocks[position],
                "delta": {"type": "input_json_delta", "partial_json": arguments}}))
        return out

    def _finish(self) -> list[bytes]:
        if not self._started or self._stop_reason is None:
            return []  # no answer, or one cut before its end: nothing to close
        self._ended = True
        delta = {"type": "message_delta", "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                 "usage": self._usage}
        return [*self._close_block(), named_event("message_delta", delta), MESSAGE_STOP]

    def _end(self) -> bytes:
        # Servers that never send [DONE] still sent their finish reason: the message is whole.
        return b"".join(self._finish()) if not self._ended else b""

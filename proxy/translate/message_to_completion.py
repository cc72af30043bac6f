"""An Anthropic Messages answer, as an OpenAI chat completion: the body, and the stream event by event
(an OpenAI client served by a Claude model).

Usage: prompt_tokens = input + cache writes + cache reads (all the input, as OpenAI counts it), of
which cached_tokens = cache reads; completion_tokens = output. The proxy meters the Anthropic answer
before it is translated (see adapters.py), so these figures are for the client only.
"""

from __future__ import annotations

import time
from typing import Any

from proxy.providers.anthropic import messages_usage
from proxy.providers.base import decode_json_object

from .base import StreamTranslator, as_dict, as_list, data_event, dumps, json_object
from .errors import anthropic_error_fields, openai_error_payload

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
DONE = b"data: [DONE]\n\n"


def finish_reason(stop_reason: object) -> str | None:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else None


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """A Messages `usage` as OpenAI's, normalised the way the proxy meters it (providers/anthropic.py)."""
    tokens = messages_usage(usage)
    return {"prompt_tokens": tokens.input_tokens, "completion_tokens": tokens.output_tokens,
            "total_tokens": tokens.input_tokens + tokens.output_tokens,
            "prompt_tokens_details": {"cached_tokens": tokens.cached_input_tokens}}


def message_to_completion(body: bytes) -> bytes:
    message = json_object(body, "answer")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in as_list(message.get("content")):
        block = as_dict(block)
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": dumps(block.get("input") or {}).decode()}})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                             "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    return dumps({
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": finish_reason(message.get("stop_reason")) or "stop"}],
        "usage": chat_usage(as_dict(message.get("usage"))),
    })


def _index(event: dict[str, Any]) -> int:
    index = event.get("index")
    return index if isinstance(index, int) else 0


class MessagesToChatStream(StreamTranslator):
    """Messages events → chat.completion.chunk events. `include_usage` is what the client's
    `stream_options` asked: then the last chunk carries the usage, as OpenAI sends it."""

    def __init__(self, *, include_usage: bool, created: int | None = None) -> None:
        super().__init__()
        self._include_usage = include_usage
        self._id = ""
        self._model = ""
        self._created = int(time.time()) if created is None else created  # Anthropic's events have no time
        self._usage: dict[str, Any] = {}
        self._tool_calls: dict[int, int] = {}  # content block index → tool call index
        self._finished = False  # message_stop seen: [DONE] sent

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                 "model": self._model, "choices": []}
        if delta is not None:
            chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if self._include_usage:
            chunk["usage"] = None
        return data_event(chunk)

    def _event(self, data: bytes) -> list[bytes]:
        event = decode_json_object(data) or {}
        kind = event.get("type")
        if kind == "message_start":
            message = as_dict(event.get("message"))
            self._id, self._model = str(message.get("id", "")), str(message.get("model", ""))
            self._usage = dict(as_dict(message.get("usage")))
            return [self._chunk({"role": "assistant", "content": "", "refusal": None})]
        if kind == "content_block_start":
            block = as_dict(event.get("content_block"))
            if block.get("type") != "tool_use":
                return []
            index = self._tool_calls[_index(event)] = len(self._tool_calls)
            call = {"index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "content_block_delta":
            return self._delta(_index(event), as_dict(event.get("delta")))
        if kind == "message_delta":
            # Cumulative: a restated count replaces the one before.
            self._usage.update((k, v) for k, v in as_dict(event.get("usage")).items() if v is not None)
            finish = finish_reason(as_dict(event.get("delta")).get("stop_reason"))
            return [self._chunk({}, finish)] if finish else []
        if kind == "message_stop":
            self._finished = True
            usage = []
            if self._include_usage:
                chunk = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                         "model": self._model, "choices": [], "usage": chat_usage(self._usage)}
                usage.append(data_event(chunk))
            return [*usage, DONE]
        if kind == "error":
            self._finished = True
            error_type, text = anthropic_error_fields(event)
            return [data_event(openai_error_payload(error_type=error_type, message=text))]
        return []  # ping, thinking and anything newer: nothing the chat format can say

    def _delta(self, index: int, delta: dict[str, Any]) -> list[bytes]:
        if delta.get("type") == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if delta.get("type") == "input_json_delta" and index in self._tool_calls:
            partial = delta.get("partial_json", "")
            if not partial:
                return []
            call = {"index": self._tool_calls[index], "function": {"arguments": partial}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _end(self) -> bytes:
        return b""  # a stream upstream never ended stays unended: the client must not take it for whole

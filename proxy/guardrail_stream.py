"""Output guardrails on a streamed answer: only the text deltas are rewritten, each text channel (a choice, a
content block, a candidate) through its own OutputFilter, which holds back at most the longest pattern's
length; every other event passes byte for byte. What a filter still holds is released before its channel's
closing event; a `block` ends the stream with the provider's own error event.

Events are read whole (SSE: up to a blank line), so a chunk boundary inside an event only delays that
event until its end arrives. The final texts some formats repeat (Responses' `*.done` and `response.completed`)
are replaced by what the client was actually sent.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from .errors import content_policy_error
from .guardrails.policy import GuardrailBlocked

if TYPE_CHECKING:
    from .guardrails.policy import GuardrailSession, OutputFilter
    from .providers.base import WireFormat

EVENT_END = re.compile(rb"\r?\n\r?\n")
# An upstream event longer than this is passed on unread (no text delta is ever that long); bounds the buffer.
MAX_EVENT_BYTES = 1 << 20


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _parse(raw: bytes) -> tuple[str | None, bytes | None]:
    """An event's name and data (the data lines joined), as SSE defines them."""
    name: str | None = None
    data: list[bytes] = []
    for line in raw.splitlines():
        if line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
        elif line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
    return name, b"\n".join(data) if data else None


class StreamGuard:
    """The output rules over one streamed answer: feed the bytes the client would get, send what comes back."""

    def __init__(self, *, session: GuardrailSession, operation: str, wire: WireFormat) -> None:
        self.session = session
        self.operation = operation
        self.wire = wire
        self.ended = False  # a rule blocked: the error event was the stream's last
        self._buffer = b""
        self._filters: dict[Any, OutputFilter] = {}
        self._sent: dict[Any, list[str]] = {}  # Responses only: each part's text as sent, for its `done` events
        self._envelope: dict[str, Any] = {}  # OpenAI chat/completions: the last chunk's id, model…, for a tail

    # --- the byte stream ---------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        if self.ended or not chunk:
            return b""
        self._buffer += chunk
        out: list[bytes] = []
        while not self.ended:
            match = EVENT_END.search(self._buffer)
            if match is None:
                if len(self._buffer) > MAX_EVENT_BYTES:
                    out.append(self._buffer)
                    self._buffer = b""
                break
            raw, self._buffer = self._buffer[:match.end()], self._buffer[match.end():]
            out.append(self._event(raw))
        return b"".join(out)

    def close(self, tail: bytes = b"") -> bytes:
        """The end of the stream: the rest of the bytes, and what every filter still holds."""
        out = self.feed(tail)
        if self.ended:
            return out
        rest, self._buffer = self._buffer, b""
        flushed = self._guarded(self._flush_all)
        return out + (flushed if self.ended else flushed + rest)

    # --- one event ---------------------------------------------------------------------------------------

    def _event(self, raw: bytes) -> bytes:
        name, data = _parse(raw)
        if data is None or not data.startswith(b"{"):
            if data is not None and data.strip() == b"[DONE]":
                return self._guarded(self._flush_all) + (b"" if self.ended else raw)
            return raw
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(payload, dict):
            return raw
        return self._guarded(lambda: self._rewrite(name, payload, raw))

    def _guarded(self, step: Any) -> bytes:
        try:
            out: bytes = step()
            return out
        except GuardrailBlocked as exc:
            self.ended = True
            return self._error_event(exc.rule_id)

    def _rewrite(self, name: str | None, payload: dict[str, Any], raw: bytes) -> bytes:
        if self.operation in ("chat", "completions"):
            return self._openai_chunk(payload, raw)
        if self.operation == "responses":
            return self._responses_event(name, payload, raw)
        if self.operation == "messages":
            return self._anthropic_event(name, payload, raw)
        if self.operation == "generate_content":
            return self._gemini_chunk(payload, raw)
        return raw

    def _filter(self, channel: Any) -> OutputFilter:
        found = self._filters.get(channel)
        if found is None:
            found = self._filters[channel] = self.session.output_filter()
        return found

    def _finish(self, channel: Any) -> str:
        found = self._filters.pop(channel, None)
        return found.finish() if found is not None else ""

    # --- OpenAI chat completions and completions: choices[].delta.content / choices[].text ---------------

    def _openai_chunk(self, payload: dict[str, Any], raw: bytes) -> bytes:
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices:
            return raw
        self._envelope = {k: payload[k] for k in ("id", "object", "created", "model") if k in payload}
        changed = False
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", position)
            holder, field = (choice, "text") if self.operation == "completions" else (choice.get("delta"), "content")
            if not isinstance(holder, dict):
                continue
            text = holder.get(field)
            if isinstance(text, str):
                out = self._filter(index).feed(text)
                changed = changed or out != text
                holder[field] = text = out
            if choice.get("finish_reason") is not None and (tail := self._finish(index)):
                holder[field] = (text if isinstance(text, str) else "") + tail
                changed = True
        return b"data: " + orjson.dumps(payload) + b"\n\n" if changed else raw

    def _openai_tails(self) -> bytes:
        out = []
        for index in sorted(self._filters, key=str):
            if tail := self._finish(index):
                choice: dict[str, Any] = {"index": index, "finish_reason": None}
                if self.operation == "completions":
                    choice["text"] = tail
                else:
                    choice["delta"] = {"content": tail}
                out.append(_sse(None, {**self._envelope, "choices": [choice]}))
        return b"".join(out)

    # --- Responses: response.output_text.delta, and the texts the later events repeat ---------------------

    def _responses_event(self, name: str | None, payload: dict[str, Any], raw: bytes) -> bytes:
        kind = payload.get("type") or name
        channel = (payload.get("output_index"), payload.get("content_index"))
        if kind == "response.output_text.delta" and isinstance(payload.get("delta"), str):
            out = self._filter(channel).feed(payload["delta"])
            self._sent.setdefault(channel, []).append(out)
            if out == payload["delta"]:
                return raw
            return _sse(name, {**payload, "delta": out})
        if kind == "response.output_text.done":
            tail = self._finish(channel)
            before = b""
            if tail:
                self._sent.setdefault(channel, []).append(tail)
                delta = {k: v for k, v in payload.items() if k not in ("text", "logprobs")}
                before = _sse(name and "response.output_text.delta",
                              {**delta, "type": "response.output_text.delta", "delta": tail})
            return before + self._with_sent_text(name, payload, raw, channel, "text")
        if kind == "response.content_part.done" and isinstance(payload.get("part"), dict):
            return self._with_sent_part(name, payload, raw, channel)
        if kind == "response.output_item.done" and isinstance(payload.get("item"), dict):
            return self._with_sent_item(name, payload, raw, payload.get("output_index"))
        if kind in ("response.completed", "response.incomplete") and isinstance(payload.get("response"), dict):
            before = self._responses_tails(name, payload)
            output = payload["response"].get("output")
            changed = False
            for index, item in enumerate(output if isinstance(output, list) else ()):
                changed = self._item_texts(item, index) or changed
            return before + (_sse(name, payload) if changed else raw)
        return raw

    def _sent_text(self, channel: Any) -> str | None:
        pieces = self._sent.get(channel)
        return "".join(pieces) if pieces is not None else None

    def _with_sent_text(self, name: str | None, payload: dict[str, Any], raw: bytes, channel: Any,
                        field: str) -> bytes:
        text = self._sent_text(channel)
        if text is None or payload.get(field) == text:
            return raw
        return _sse(name, {**payload, field: text})

    def _with_sent_part(self, name: str | None, payload: dict[str, Any], raw: bytes, channel: Any) -> bytes:
        text = self._sent_text(channel)
        part = payload["part"]
        if text is None or part.get("type") != "output_text" or part.get("text") == text:
            return raw
        return _sse(name, {**payload, "part": {**part, "text": text}})

    def _item_texts(self, item: Any, output_index: Any) -> bool:
        changed = False
        content = item.get("content") if isinstance(item, dict) else None
        for index, part in enumerate(content if isinstance(content, list) else ()):
            text = self._sent_text((output_index, index))
            if isinstance(part, dict) and part.get("type") == "output_text" and text is not None \
                    and part.get("text") != text:
                part["text"] = text
                changed = True
        return changed

    def _with_sent_item(self, name: str | None, payload: dict[str, Any], raw: bytes, output_index: Any) -> bytes:
        return _sse(name, payload) if self._item_texts(payload["item"], output_index) else raw

    def _responses_tails(self, name: str | None, payload: dict[str, Any]) -> bytes:
        """Text still held when the response ends without its `done` events (a cut, an incomplete answer)."""
        out = []
        for channel in list(self._filters):
            if tail := self._finish(channel):
                self._sent.setdefault(channel, []).append(tail)
                out.append(_sse(name and "response.output_text.delta", {
                    "type": "response.output_text.delta", "output_index": channel[0], "content_index": channel[1],
                    "delta": tail, "sequence_number": payload.get("sequence_number", 0)}))
        return b"".join(out)

    # --- Anthropic Messages: content_block_delta text_delta ----------------------------------------------

    def _anthropic_event(self, name: str | None, payload: dict[str, Any], raw: bytes) -> bytes:
        kind = payload.get("type") or name
        index = payload.get("index")
        if kind == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                out = self._filter(index).feed(delta["text"])
                return raw if out == delta["text"] else _sse(name, {**payload, "delta": {**delta, "text": out}})
            return raw
        if kind == "content_block_stop":
            return self._anthropic_tail(index) + raw
        if kind == "message_stop":
            return b"".join(self._anthropic_tail(i) for i in list(self._filters)) + raw
        return raw

    def _anthropic_tail(self, index: Any) -> bytes:
        tail = self._finish(index)
        if not tail:
            return b""
        return _sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": {"type": "text_delta", "text": tail}})

    # --- Gemini: candidates[].content.parts[].text --------------------------------------------------------

    def _gemini_chunk(self, payload: dict[str, Any], raw: bytes) -> bytes:
        candidates = payload.get("candidates")
        if not isinstance(candidates, list):
            return raw
        changed = False
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index", position)
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            last_text: dict[str, Any] | None = None
            for part in parts if isinstance(parts, list) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    out = self._filter(index).feed(part["text"])
                    changed = changed or out != part["text"]
                    part["text"] = out
                    last_text = part
            if candidate.get("finishReason") and (tail := self._finish(index)):
                if last_text is not None:
                    last_text["text"] += tail
                elif isinstance(content, dict):
                    content["parts"] = [*(parts if isinstance(parts, list) else []), {"text": tail}]
                else:
                    candidate["content"] = {"parts": [{"text": tail}], "role": "model"}
                changed = True
        return b"data: " + orjson.dumps(payload) + b"\n\n" if changed else raw

    def _gemini_tails(self) -> bytes:
        out = []
        for index in list(self._filters):
            if tail := self._finish(index):
                out.append(_sse(None, {"candidates": [{"content": {"parts": [{"text": tail}], "role": "model"},
                                                       "index": index}]}))
        return b"".join(out)

    # --- the end ---------------------------------------------------------------------------------------

    def _flush_all(self) -> bytes:
        if not self._filters:
            return b""
        if self.operation in ("chat", "completions"):
            return self._openai_tails()
        if self.operation == "responses":
            return self._responses_tails("response.output_text.delta", {})
        if self.operation == "messages":
            return b"".join(self._anthropic_tail(i) for i in list(self._filters))
        return self._gemini_tails()

    def _error_event(self, rule_id: str) -> bytes:
        """The provider's own in-stream error, as the last event (OpenAI: an error data chunk and no [DONE])."""
        error = content_policy_error(rule_id=rule_id, scope="output")
        if self.operation == "messages":
            return _sse("error", {"type": "error", "error": {"type": error.error_type, "message": error.message,
                                                             "code": error.code}})
        if self.operation == "responses":
            return _sse("error", {"type": "error", "code": error.code, "message": error.message, "param": None})
        body = self.wire.error_body(status=error.status, error_type=error.error_type, message=error.message,
                                    code=error.code)
        return b"data: " + body + b"\n\n"

"""What every translation shares: the refusal, JSON helpers, and the incremental SSE framing of a
stream translator.

Pure: no I/O, no Django. A translation never guesses: a request that uses something the other format
cannot express faithfully raises `Untranslatable`, and the route skips that target.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from proxy.providers.base import complete_events_length, decode_json_object, sse_data, sse_event_spans


class Untranslatable(Exception):
    """A request the target format cannot serve faithfully; `reason` says what (for logs and the route's
    own error when no target is left)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def json_object(body: bytes, what: str) -> dict[str, Any]:
    payload = decode_json_object(body)
    if payload is None:
        raise Untranslatable(f"the {what} is not a JSON object")
    return payload


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def unknown_keys(payload: dict[str, Any], known: frozenset[str],
                 neutral: Mapping[str, Any] = MappingProxyType({})) -> None:
    """Refuse any top-level parameter this translation does not know: it may change the answer. A null, and a
    value `neutral` lists for its key (what the API does when it is left out, as some clients spell out),
    is no request at all."""
    extra = sorted(key for key, value in payload.items()
                   if key not in known and value is not None and (key not in neutral or value != neutral[key]))
    if extra:
        raise Untranslatable(f"parameter {extra[0]!r} has no translation")


def data_event(payload: Any) -> bytes:
    """An OpenAI chat-completions SSE event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_event(name: str, payload: Any) -> bytes:
    """An Anthropic SSE event: its SDK dispatches on the `event:` line, so it is never left out."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamTranslator:
    """Turns one upstream SSE stream into the client's format, event by event, as the bytes arrive.

    `feed(chunk)` takes upstream bytes split anywhere (inside a line, inside a "\\r\\n") and returns the
    translated bytes of the whole events seen so far; `close()` translates an unterminated last event and
    ends the stream the way the client's format ends it (when the upstream ended it). Nothing but an
    unfinished event is ever held back.

    Subclasses implement `_event(data)` for one event's data (its `data:` lines joined) and `_end()`.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._pending + chunk if self._pending else chunk
        whole = complete_events_length(buffer)
        self._pending = buffer[whole:]
        return self._translate(buffer[:whole]) if whole else b""

    def close(self) -> bytes:
        tail, self._pending = self._pending, b""
        return self._translate(tail) + self._end()

    def _translate(self, region: bytes) -> bytes:
        out: list[bytes] = []
        for start, end in sse_event_spans(region):
            data = sse_data(region[start:end])
            if data:
                out.extend(self._event(data))
        return b"".join(out)

    def _event(self, data: bytes) -> list[bytes]:
        raise NotImplementedError

    def _end(self) -> bytes:
        raise NotImplementedError

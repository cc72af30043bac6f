"""Server-sent events: formatting them, and sending a stream one event per write with the test
controls applied (delay between events, hold after the first, connection cut after N)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from .controls import Controls
from .state import SimulatorState

EVENT_STREAM = "text/event-stream; charset=utf-8"
_EVENT_END = re.compile(rb"\r?\n\r?\n")


def data_event(payload: Any) -> bytes:
    """An OpenAI chat-style event: a `data:` line only."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_event(name: str, payload: Any) -> bytes:
    """An Anthropic / Responses-style event: `event:` then `data:`."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def split_events(stream: bytes) -> list[bytes]:
    """A recorded stream cut into its events, blank-line terminators included, so that the parts
    joined are the recording byte for byte (trailing whitespace rides with the last event)."""
    events: list[bytes] = []
    start = 0
    for end in _EVENT_END.finditer(stream):
        events.append(stream[start:end.end()])
        start = end.end()
    rest = stream[start:]
    if rest:
        if events and not rest.strip():
            events[-1] += rest
        else:
            events.append(rest)
    return events


async def send_stream(
    request: web.Request,
    events: Iterable[bytes],
    *,
    controls: Controls,
    state: SimulatorState,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache",
                                           **(headers or {})})
    delay = controls.chunk_delay_ms / 1000
    try:
        await response.prepare(request)
        for sent, event in enumerate(events):
            if sent == controls.drop_after:
                _cut_connection(request)
                return response
            if sent:
                if sent == 1 and controls.hold:
                    await state.holds.wait(controls.hold, state.hold_timeout_s)
                if delay:
                    await asyncio.sleep(delay)
            await response.write(event)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; nothing left to send it
    return response


def _cut_connection(request: web.Request) -> None:
    # Closing the socket without the terminating chunk is what a client sees when an upstream dies
    # mid-stream: "incomplete chunked read".
    if request.transport is not None:
        request.transport.close()

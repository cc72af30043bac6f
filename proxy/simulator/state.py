"""The simulator's process state: its settings, the requests it received, the streams held back
for a test, and the ids it hands out."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .controls import Controls

RECORDED_REQUESTS = 100


@dataclass(slots=True, frozen=True)
class RecordedRequest:
    method: str
    path: str
    raw_path: str  # path and query as they arrived, percent-encoding and all
    query: str
    headers: Any  # the request's own immutable header mapping, turned into a dict only when asked for
    body: Any

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "raw_path": self.raw_path,
            "query": self.query,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": self.body,
        }


class Holds:
    """Streams paused after their first event until a test releases their token.

    A release that arrives before its stream is waiting is kept, so the stream then goes straight on.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    async def wait(self, token: str, timeout: float) -> bool:
        """Wait for `release(token)`; False when the timeout passed first."""
        event = self._events.setdefault(token, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if self._events.get(token) is event:
                del self._events[token]

    def release(self, token: str) -> None:
        self._events.setdefault(token, asyncio.Event()).set()

    def release_all(self) -> None:
        for event in self._events.values():
            event.set()


@dataclass(slots=True)
class SimulatorState:
    latency_ms: float
    chunk_delay_ms: float
    reply_words: int
    embedding_dimensions: int
    hold_timeout_s: float
    fixtures_dir: Path
    requests: deque[RecordedRequest] = field(default_factory=lambda: deque(maxlen=RECORDED_REQUESTS))
    holds: Holds = field(default_factory=Holds)
    _serial: itertools.count[int] = field(default_factory=itertools.count)
    _salt: str = field(default_factory=lambda: secrets.token_hex(4))
    _failures: dict[str, int] = field(default_factory=dict)  # X-Sim-Fail-Key → failures answered so far

    def should_fail(self, controls: Controls, payload: Any) -> bool:
        """Whether this request gets its X-Sim-Status: only for X-Sim-Fail-Model's model when given, and only
        X-Sim-Fail-Times times per X-Sim-Fail-Key when given."""
        if controls.fail_model is not None and (not isinstance(payload, dict)
                                                or payload.get("model") != controls.fail_model):
            return False
        if controls.fail_times is None:
            return True
        if len(self._failures) > 10_000:
            self._failures.clear()
        done = self._failures.get(controls.fail_key, 0)
        if done >= controls.fail_times:
            return False
        self._failures[controls.fail_key] = done + 1
        return True

    def record(self, request: web.Request, body: Any) -> None:
        self.requests.append(RecordedRequest(request.method, request.path, request.raw_path,
                                             request.query_string, request.headers, body))

    def new_id(self, prefix: str) -> str:
        """A unique id shaped like the provider's (`chatcmpl-…`, `msg_…`, `resp_…`)."""
        return f"{prefix}{self._salt}{next(self._serial):016x}"


STATE = web.AppKey("simulator_state", SimulatorState)

"""One simulated API call, as the endpoint handlers see it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from .controls import Controls
from .errors import JSON
from .sse import send_stream
from .state import SimulatorState


@dataclass(slots=True)
class Call:
    request: web.Request
    payload: dict[str, Any]
    controls: Controls
    state: SimulatorState
    response_headers: dict[str, str]

    @property
    def model(self) -> str:
        """The model the answer names: the requested one, unless X-Sim-Served-Model says otherwise."""
        if self.controls.served_model:
            return self.controls.served_model
        model = self.payload.get("model")
        return model if isinstance(model, str) else ""

    @property
    def streams(self) -> bool:
        return self.payload.get("stream") is True

    def json(self, body: Any) -> web.Response:
        return web.Response(body=orjson.dumps(body), content_type=JSON, headers=self.response_headers)

    async def stream(self, events: Iterable[bytes]) -> web.StreamResponse:
        return await send_stream(self.request, events, controls=self.controls, state=self.state,
                                 headers=self.response_headers)


def now() -> int:
    return int(time.time())

"""`X-Sim-Fixture: NAME` replays a recorded provider response from the fixtures directory, byte
for byte: an `.sse` file as a stream (one event per write), anything else as one JSON body."""

from __future__ import annotations

from aiohttp import web

from .controls import Controls
from .errors import JSON, Wire, error_response
from .sse import send_stream, split_events
from .state import SimulatorState


async def replay_fixture(
    request: web.Request, wire: Wire, *, controls: Controls, state: SimulatorState
) -> web.StreamResponse:
    name = controls.fixture or ""
    path = state.fixtures_dir / name
    # Only plain file names: a header must not reach outside the fixtures directory.
    if name.startswith(".") or "/" in name or "\\" in name or not path.is_file():
        return error_response(wire, 404, f"simulator: no fixture {name!r} in {state.fixtures_dir}")
    recording = path.read_bytes()
    if path.suffix == ".sse":
        return await send_stream(request, split_events(recording), controls=controls, state=state)
    return web.Response(body=recording, content_type=JSON)

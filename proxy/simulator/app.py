"""The simulator's aiohttp application: routes, and what every simulated call goes through first
(recording, authentication, the `X-Sim-*` controls) before its endpoint answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from . import anthropic_api, gemini_api, openai_api
from .call import Call
from .content import MAX_REPLY_WORDS
from .controls import ControlError, read_controls
from .errors import JSON, Wire, error_response, is_authenticated, missing_key_response
from .fixtures import replay_fixture
from .state import STATE, SimulatorState

Endpoint = Callable[[Call], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURES_DIR = REPOSITORY / "tests" / "fixtures" / "sse"
# Above the proxy's own 32 MiB request limit, so that limit is the one tests meet.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
_NOT_JSON = object()


def create_app(
    *,
    latency_ms: float = 0,
    chunk_delay_ms: float = 0,
    reply_words: int = 24,
    embedding_dimensions: int = 8,
    hold_timeout_s: float = 10.0,
    fixtures_dir: Path | str | None = None,
) -> web.Application:
    """The simulator. `latency_ms` passes before every answer (before the first byte of a stream),
    `chunk_delay_ms` between streamed events; `reply_words` is the length of a reply unless the
    request's output limit is lower; `fixtures_dir` holds the recordings `X-Sim-Fixture` replays."""
    if not 0 <= reply_words <= MAX_REPLY_WORDS:
        raise ValueError(f"reply_words must be between 0 and {MAX_REPLY_WORDS}")
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[STATE] = SimulatorState(
        latency_ms=latency_ms,
        chunk_delay_ms=chunk_delay_ms,
        reply_words=reply_words,
        embedding_dimensions=embedding_dimensions,
        hold_timeout_s=hold_timeout_s,
        fixtures_dir=Path(fixtures_dir) if fixtures_dir is not None else DEFAULT_FIXTURES_DIR,
    )
    app.on_shutdown.append(_release_held_streams)
    add = app.router.add_route
    add("POST", "/v1/chat/completions", simulated(openai=openai_api.chat_completions))
    add("POST", "/v1/completions", simulated(openai=openai_api.completions))
    add("POST", "/v1/responses", simulated(openai=openai_api.responses))
    add("POST", "/v1/responses/input_tokens", simulated(openai=openai_api.input_tokens))
    add("POST", "/v1/embeddings", simulated(openai=openai_api.embeddings))
    add("POST", "/v1/messages", simulated(anthropic=anthropic_api.messages))
    add("POST", "/v1/messages/count_tokens", simulated(anthropic=anthropic_api.count_tokens))
    add("GET", "/v1/models", simulated(openai=openai_api.list_models, anthropic=anthropic_api.list_models,
                                       gemini=gemini_api.list_models, takes_body=False))
    add("GET", "/v1/models/{model}", simulated(openai=openai_api.retrieve_model,
                                               anthropic=anthropic_api.retrieve_model,
                                               gemini=gemini_api.retrieve_model, takes_body=False))
    for version in ("v1beta", "v1"):
        add("POST", f"/{version}/models/{{call}}", simulated(gemini=gemini_api.model_call))
    add("GET", "/v1beta/models", simulated(gemini=gemini_api.list_models, takes_body=False))
    add("GET", "/v1beta/models/{model}", simulated(gemini=gemini_api.retrieve_model, takes_body=False))
    # Azure OpenAI: deployment routes (api-version required) and the v1 routes, authenticated by api-key.
    for operation, endpoint in (("chat/completions", openai_api.chat_completions),
                                ("completions", openai_api.completions), ("embeddings", openai_api.embeddings)):
        add("POST", f"/openai/deployments/{{deployment}}/{operation}", simulated(openai=azure_deployment(endpoint),
                                                                                 azure=True))
        add("POST", f"/openai/v1/{operation}", simulated(openai=endpoint, azure=True))
    add("POST", "/openai/v1/responses", simulated(openai=openai_api.responses, azure=True))
    add("GET", "/openai/v1/models", simulated(openai=openai_api.list_models, takes_body=False, azure=True))
    add("GET", "/_sim/requests", recorded_requests)
    add("DELETE", "/_sim/requests", forget_requests)
    add("POST", "/_sim/release/{token}", release_hold)
    add("GET", "/_sim/health", health)
    add("*", "/{path:.*}", simulated(openai=_not_found, anthropic=_not_found, takes_body=False))
    return app


def azure_deployment(endpoint: Endpoint) -> Endpoint:
    """An OpenAI endpoint on an Azure deployment route: the deployment in the path is the model (a body may
    omit `model`), and without `api-version` Azure answers 404."""

    async def deployed(call: Call) -> web.StreamResponse:
        if not call.request.query.get("api-version"):
            return error_response(Wire.OPENAI, 404, "Resource not found")
        call.payload.setdefault("model", call.request.match_info["deployment"])
        return await endpoint(call)

    return deployed


def simulated(
    *,
    openai: Endpoint | None = None,
    anthropic: Endpoint | None = None,
    gemini: Endpoint | None = None,
    takes_body: bool = True,
    azure: bool = False,
) -> Handler:
    """The route handler of a provider endpoint. A path several APIs have (given their endpoints) goes to
    Anthropic's when the request carries `anthropic-version`, as the Anthropic SDK always does, to Gemini's
    when it carries `x-goog-api-key` or `?key=`, else to OpenAI's.
    An endpoint that `takes_body` answers 400 unless the body is a JSON object."""
    endpoints = {wire: endpoint for wire, endpoint in ((Wire.OPENAI, openai), (Wire.ANTHROPIC, anthropic),
                                                       (Wire.GEMINI, gemini))
                 if endpoint is not None}
    fixed_wire = next(iter(endpoints)) if len(endpoints) == 1 else None

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        raw = await request.read()
        payload = _parse_json(raw)
        state.record(request, None if payload is _NOT_JSON else payload)
        headers = request.headers
        wire = fixed_wire or _wire_of(request, endpoints)
        if not is_authenticated(wire, headers, azure=azure) and not (wire is Wire.GEMINI and request.query.get("key")):
            return missing_key_response(wire)
        try:
            controls = read_controls(headers, latency_ms=state.latency_ms, chunk_delay_ms=state.chunk_delay_ms,
                                     words=state.reply_words)
        except ControlError as exc:
            return error_response(wire, 400, f"simulator: {exc}")
        if controls.latency_ms:
            await asyncio.sleep(controls.latency_ms / 1000)
        if controls.status and state.should_fail(controls, payload):
            failed = error_response(wire, controls.status)
            if controls.retry_after:
                failed.headers["Retry-After"] = controls.retry_after
            return failed
        if controls.fixture:
            return await replay_fixture(request, wire, controls=controls, state=state)
        if takes_body and not isinstance(payload, dict):
            return _invalid_body(wire)
        request_id = ({"request-id": state.new_id("req_011")} if wire is Wire.ANTHROPIC
                      else {} if wire is Wire.GEMINI else {"x-request-id": state.new_id("req_")})
        call = Call(request=request, payload=payload if isinstance(payload, dict) else {}, controls=controls,
                    state=state, response_headers=request_id)
        response = await endpoints[wire](call)
        if controls.drop_body_after is not None and type(response) is web.Response:
            return await _cut_body(request, response, controls.drop_body_after)
        return response

    return handle


def _wire_of(request: web.Request, endpoints: dict[Wire, Endpoint]) -> Wire:
    headers = request.headers
    if "anthropic-version" in headers and Wire.ANTHROPIC in endpoints:
        return Wire.ANTHROPIC
    if ("x-goog-api-key" in headers or "key" in request.query) and Wire.GEMINI in endpoints:
        return Wire.GEMINI
    return Wire.OPENAI


async def _cut_body(request: web.Request, whole: web.Response, size: int) -> web.StreamResponse:
    """`whole`'s status, headers and full Content-Length, then only `size` bytes of its body: an upstream
    that dies while a non-streamed answer is on the wire."""
    body = bytes(whole.body) if isinstance(whole.body, (bytes, bytearray)) else b""
    cut = web.StreamResponse(status=whole.status, headers=whole.headers)
    cut.content_length = len(body)
    await cut.prepare(request)
    await cut.write(body[:size])
    if request.transport is not None:
        request.transport.close()
    return cut


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _invalid_body(wire: Wire) -> web.Response:
    if wire is Wire.ANTHROPIC:
        return error_response(wire, 400, "There was an error parsing the body of your request. "
                                         "Please check that it is valid JSON and try again.")
    return error_response(wire, 400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                     "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                                     "payload, but what was sent was not valid JSON.)")


async def _not_found(call: Call) -> web.StreamResponse:
    request = call.request
    if "anthropic-version" in request.headers:
        return error_response(Wire.ANTHROPIC, 404, "Not Found")
    return error_response(Wire.OPENAI, 404, f"Invalid URL ({request.method} {request.path})")


# --- test introspection: /_sim/ ----------------------------------------------------------------

async def recorded_requests(request: web.Request) -> web.Response:
    recorded = [entry.as_json() for entry in request.app[STATE].requests]
    return web.Response(body=orjson.dumps(recorded), content_type=JSON)


async def forget_requests(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return web.Response(status=204)


async def release_hold(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    request.app[STATE].holds.release(token)
    return web.Response(body=orjson.dumps({"released": token}), content_type=JSON)


async def health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type=JSON)


async def _release_held_streams(app: web.Application) -> None:
    app[STATE].holds.release_all()

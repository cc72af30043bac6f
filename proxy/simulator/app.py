"""A fake of the OpenAI and Anthropic HTTP APIs: real wire formats, realistic usage, test controls.

Used by the demo (bin/run), by the proxy's tests and by the benchmark, so it is cheap per request.
Control headers (all optional): X-Sim-Cached-Tokens, X-Sim-Cache-Write-Tokens,
X-Sim-Reasoning-Tokens, X-Sim-Status, X-Sim-Fixture, X-Sim-Hold, X-Sim-Drop-After,
X-Sim-Latency-Ms, X-Sim-Chunk-Delay-Ms, X-Sim-Extra-Usage-Choice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

REPLY = (
    "Certainly here is a short answer that stays on topic and keeps the numbers exact while the "
    "proxy meters every token it sees along the way"
)
WORDS = REPLY.split()
DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "sse"
EMBEDDING_DIMENSIONS = 8
LATENCY_MS_KEY = web.AppKey("latency_ms", float)
CHUNK_DELAY_MS_KEY = web.AppKey("chunk_delay_ms", float)
FIXTURES_KEY = web.AppKey("fixtures", Path)
REQUESTS_KEY = web.AppKey("requests", deque)
HOLDS_KEY = web.AppKey("holds", dict)


def _rid(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _text_of(value: Any) -> int:
    """Characters of text in a request value (strings, content parts, nested lists)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_of(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_of(v) for k, v in value.items() if k in ("text", "content", "input", "arguments"))
    return 0


def _prompt_tokens(payload: dict[str, Any], *keys: str) -> int:
    chars = sum(_text_of(payload.get(k)) for k in keys)
    messages = payload.get("messages")
    overhead = 4 * len(messages) + 3 if isinstance(messages, list) else 3
    return max(1, math.ceil(chars / 4) + overhead)


def _word_count(payload: dict[str, Any]) -> int:
    limit = payload.get("max_tokens") or payload.get("max_completion_tokens") or payload.get("max_output_tokens")
    return max(1, min(int(limit) if isinstance(limit, int) else 24, 24))


class Controls:
    def __init__(self, request: web.Request, app: web.Application) -> None:
        h = request.headers
        self.cached = int(h.get("X-Sim-Cached-Tokens", 0))
        self.cache_write = int(h.get("X-Sim-Cache-Write-Tokens", 0))
        self.reasoning = int(h.get("X-Sim-Reasoning-Tokens", 0))
        self.status = int(h.get("X-Sim-Status", 0))
        self.fixture = h.get("X-Sim-Fixture")
        self.hold = h.get("X-Sim-Hold")
        self.drop_after = int(h.get("X-Sim-Drop-After", 0))
        self.latency = float(h.get("X-Sim-Latency-Ms", app[LATENCY_MS_KEY])) / 1000
        self.chunk_delay = float(h.get("X-Sim-Chunk-Delay-Ms", app[CHUNK_DELAY_MS_KEY])) / 1000
        self.usage_on_last_choice = h.get("X-Sim-Extra-Usage-Choice") == "1"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _openai_error(status: int, message: str) -> web.Response:
    kinds = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
             429: "rate_limit_exceeded"}
    return _json({"error": {"message": message, "type": kinds.get(status, "server_error"), "param": None,
                            "code": None}}, status)


def _anthropic_error(status: int, message: str) -> web.Response:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}
    return _json({"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}, status)


async def _stream(request: web.Request, controls: Controls, events: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    for index, event in enumerate(events):
        if controls.drop_after and index >= controls.drop_after:
            assert request.transport is not None
            request.transport.close()  # an upstream cut short, mid-stream
            return response
        try:
            await response.write(event)
        except ConnectionResetError:
            return response  # the client (the proxy) went away
        if index == 0 and controls.hold:
            waiter = request.app[HOLDS_KEY].setdefault(controls.hold, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout=10)
            request.app[HOLDS_KEY].pop(controls.hold, None)
        elif controls.chunk_delay:
            await asyncio.sleep(controls.chunk_delay)
    await response.write_eof()
    return response


def _sse(data: Any, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n".encode() if event else b""
    return prefix + b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"


async def _fixture(request: web.Request, controls: Controls) -> web.StreamResponse:
    path = request.app[FIXTURES_KEY] / Path(controls.fixture or "").name
    if not path.is_file():
        return _json({"error": {"message": f"no fixture {controls.fixture}"}}, 404)
    raw = path.read_bytes()
    if path.suffix != ".sse":
        return web.Response(body=raw, content_type="application/json")
    events = [part + b"\n\n" for part in raw.split(b"\n\n") if part.strip()]
    return await _stream(request, controls, events)


# --- OpenAI ---------------------------------------------------------------------------------

def _chat_usage(prompt: int, completion: int, c: Controls) -> dict[str, Any]:
    completion += c.reasoning
    return {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": c.cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": c.reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


async def chat_completions(request: web.Request, payload: dict[str, Any], c: Controls) -> web.StreamResponse:
    model = payload.get("model", "gpt-4o-mini")
    words = WORDS[: _word_count(payload)]
    prompt = _prompt_tokens(payload, "messages", "tools") + c.cached + c.cache_write
    usage = _chat_usage(prompt, len(words), c)
    rid, created = _rid("chatcmpl-"), int(time.time())
    if not payload.get("stream"):
        return _json({
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words), "refusal": None,
                                                 "annotations": []},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage, "service_tier": "default", "system_fingerprint": "fp_sim",
        })
    include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_sim"}
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice], **extra, **more})

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": (" " if i else "") + w}) for i, w in enumerate(words)]
    if c.usage_on_last_choice:
        events.append(chunk({}, "stop", usage=usage))
    else:
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append(_sse({**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return await _stream(request, c, events)


async def responses(request: web.Request, payload: dict[str, Any], c: Controls) -> web.StreamResponse:
    model = payload.get("model", "gpt-4o-mini")
    words = WORDS[: _word_count(payload)]
    text = " ".join(words)
    prompt = _prompt_tokens(payload, "input", "instructions") + c.cached
    output = len(words) + c.reasoning
    usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": c.cached},
             "output_tokens": output, "output_tokens_details": {"reasoning_tokens": c.reasoning},
             "total_tokens": prompt + output}
    rid, item_id, created = _rid("resp_"), _rid("msg_"), int(time.time())
    message = {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}

    def body(status: str, output_items: list[Any], usage_value: Any) -> dict[str, Any]:
        return {"id": rid, "object": "response", "created_at": created, "status": status, "model": model,
                "output": output_items, "usage": usage_value, "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": [], "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}},
                "error": None, "incomplete_details": None, "instructions": payload.get("instructions") and None,
                "metadata": {}, "store": True, "truncation": "disabled", "reasoning": {"effort": None}}

    if not payload.get("stream"):
        return _json(body("completed", [message], usage))
    seq = iter(range(10_000))

    def ev(kind: str, data: dict[str, Any]) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **data}, kind)

    partial = {**message, "status": "in_progress", "content": []}
    events = [
        ev("response.created", {"response": body("in_progress", [], None)}),
        ev("response.in_progress", {"response": body("in_progress", [], None)}),
        ev("response.output_item.added", {"output_index": 0, "item": partial}),
        ev("response.content_part.added", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                           "part": {"type": "output_text", "text": "", "annotations": []}}),
    ]
    events += [ev("response.output_text.delta", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                                 "delta": (" " if i else "") + w, "logprobs": []})
               for i, w in enumerate(words)]
    events += [
        ev("response.output_text.done", {"item_id": item_id, "output_index": 0, "content_index": 0, "text": text,
                                         "logprobs": []}),
        ev("response.content_part.done", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                          "part": message["content"][0]}),
        ev("response.output_item.done", {"output_index": 0, "item": message}),
        ev("response.completed", {"response": body("completed", [message], usage)}),
    ]
    return await _stream(request, c, events)


async def embeddings(request: web.Request, payload: dict[str, Any], c: Controls) -> web.StreamResponse:
    raw = payload.get("input", "")
    inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    tokens = sum(len(i) if isinstance(i, list) else max(1, math.ceil(len(str(i)) / 4)) for i in inputs)
    as_base64 = payload.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vector = [((hash(str(item)) >> (4 * d)) % 1000) / 1000 for d in range(EMBEDDING_DIMENSIONS)]
        embedding: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return _json({"object": "list", "data": data, "model": payload.get("model", "text-embedding-3-small"),
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def models(request: web.Request) -> web.Response:
    names = ["gpt-4o-mini", "gpt-4o", "o4-mini", "text-embedding-3-small"]
    return _json({"object": "list", "data": [{"id": n, "object": "model", "created": 1_700_000_000,
                                               "owned_by": "system"} for n in names]})


# --- Anthropic ------------------------------------------------------------------------------

async def messages(request: web.Request, payload: dict[str, Any], c: Controls) -> web.StreamResponse:
    model = payload.get("model", "claude-sonnet-4-5")
    words = WORDS[: _word_count(payload)]
    input_tokens = _prompt_tokens(payload, "messages", "system", "tools")
    usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": c.cache_write,
             "cache_read_input_tokens": c.cached,
             "cache_creation": {"ephemeral_5m_input_tokens": c.cache_write, "ephemeral_1h_input_tokens": 0},
             "output_tokens": len(words), "service_tier": "standard"}
    mid = _rid("msg_")
    if not payload.get("stream"):
        return _json({"id": mid, "type": "message", "role": "assistant", "model": model,
                      "content": [{"type": "text", "text": " ".join(words)}], "stop_reason": "end_turn",
                      "stop_sequence": None, "usage": usage})
    start_usage = {**usage, "output_tokens": 1}
    events = [
        _sse({"type": "message_start", "message": {"id": mid, "type": "message", "role": "assistant", "model": model,
                                                   "content": [], "stop_reason": None, "stop_sequence": None,
                                                   "usage": start_usage}}, "message_start"),
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
             "content_block_start"),
        _sse({"type": "ping"}, "ping"),
    ]
    events += [_sse({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": (" " if i else "") + w}}, "content_block_delta")
               for i, w in enumerate(words)]
    events += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
              "usage": {"output_tokens": len(words)}}, "message_delta"),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return await _stream(request, c, events)


# --- plumbing -------------------------------------------------------------------------------

Handler = Callable[[web.Request, dict[str, Any], Controls], Any]


def _endpoint(handler: Handler, anthropic: bool) -> Callable[[web.Request], Any]:
    error = _anthropic_error if anthropic else _openai_error

    async def endpoint(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            payload = None
        _remember(request, payload)
        credential = request.headers.get("x-api-key" if anthropic else "Authorization", "")
        if anthropic and not credential:
            credential = request.headers.get("Authorization", "")
        if not credential:
            return error(401, "Missing API key.")
        controls = Controls(request, request.app)
        if controls.latency:
            await asyncio.sleep(controls.latency)
        if controls.status >= 400:
            return error(controls.status, f"Simulated error {controls.status}.")
        if controls.fixture:
            return await _fixture(request, controls)
        if not isinstance(payload, dict):
            return error(400, "We could not parse the JSON body of your request.")
        return await handler(request, payload, controls)

    return endpoint


def _remember(request: web.Request, payload: Any) -> None:
    request.app[REQUESTS_KEY].append({
        "method": request.method, "path": request.path, "query": request.query_string,
        "headers": {k.lower(): v for k, v in request.headers.items()}, "body": payload,
    })


async def list_requests(request: web.Request) -> web.Response:
    return _json(list(request.app[REQUESTS_KEY]))


async def clear_requests(request: web.Request) -> web.Response:
    request.app[REQUESTS_KEY].clear()
    return _json({"cleared": True})


async def release(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    request.app[HOLDS_KEY].setdefault(token, asyncio.Event()).set()
    return _json({"released": token})


def create_app(
    *, latency_ms: float = 0, chunk_delay_ms: float = 0, fixtures_dir: Path | None = None
) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[LATENCY_MS_KEY], app[CHUNK_DELAY_MS_KEY] = latency_ms, chunk_delay_ms
    app[FIXTURES_KEY] = fixtures_dir or DEFAULT_FIXTURES
    app[REQUESTS_KEY] = deque(maxlen=100)
    app[HOLDS_KEY] = {}
    app.router.add_post("/v1/chat/completions", _endpoint(chat_completions, anthropic=False))
    app.router.add_post("/v1/completions", _endpoint(chat_completions, anthropic=False))
    app.router.add_post("/v1/responses", _endpoint(responses, anthropic=False))
    app.router.add_post("/v1/embeddings", _endpoint(embeddings, anthropic=False))
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/messages", _endpoint(messages, anthropic=True))
    app.router.add_get("/_sim/requests", list_requests)
    app.router.add_delete("/_sim/requests", clear_requests)
    app.router.add_post("/_sim/release/{token}", release)
    return app



"""The provider's answer on its way to the client: a body read whole and sent with its cost, or a
stream passed on chunk by chunk while its usage is read; either way the call's usage is fixed here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp

from proxy.usage import TokenUsage

from . import metrics
from .admission import price
from .call_record import provider_cost_check
from .errors import ProxyError
from .headers import cost_header, response_headers

if TYPE_CHECKING:
    from .gateway import Call

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class UpstreamCut(Exception):
    """The provider cut a response the client had started to receive.

    Raised out of the application once the call is settled: there is no ASGI message that aborts a
    response, and an exception after `http.response.start` is how a server is told to close the client's
    connection without a terminator (uvicorn; Daphne with tokonomics/daphne_compat.py). Ending the body
    cleanly would pass a truncated stream off as a complete one; returning leaves Daphne's client waiting.
    """


def cut_short(call: Call) -> NoReturn:
    """The upstream failed after it answered: what was seen is recorded as an estimate, and the client
    learns of the cut the way it would have without the proxy.

    A stream's relay has already passed on and read everything the provider sent before the cut
    (`relay_stream`); here the client's stream is cut in turn."""
    metrics.errors_total.labels(call.provider_label, "upstream_cut_short").inc()
    if call.streamed:
        raise UpstreamCut(f"{call.provider} cut the stream of {call.rid}")
    # Nothing was sent yet (a body is relayed once read whole): a 502, and the reservation released.
    call.status = 0
    raise ProxyError(502, "api_error", "The provider's response was cut short.", code="upstream_cut_short")


async def relay_body(*, call: Call, upstream: aiohttp.ClientResponse, send: Send, started: float) -> None:
    body = await upstream.read()
    finished = time.perf_counter()
    call.upstream_seconds = finished - started
    if call.info is not None and upstream.status < 400:
        usage, served = call.wire.usage_from_body(call.info.operation, body)
        usage_account(call, usage, served)
    elif call.info is not None:
        # The provider refused the call: nothing was generated, nothing is owed.
        call.usage, call.cost_usd = TokenUsage(), Decimal(0)
    # Every non-streamed answer says its cost (CONTRACT §1): "unknown" only for an unmetered route or model.
    extra = [(b"content-length", str(len(body)).encode()), (b"x-tokonomics-cost-usd", cost_header(call.cost_usd)),
             *call.response_headers_extra]
    if call.cache is not None:
        # A cacheable call answered upstream: kept (if it may be) once settled (cache_steps.cache_store).
        extra.append((b"x-tokonomics-cache", b"miss"))
        cache_record_start(call, upstream)
        call.cache.record(body)
        call.cache.complete = True
    overhead = call.overhead_seconds + (time.perf_counter() - finished)
    extra.append((b"x-tokonomics-overhead-ms", f"{overhead * 1000:.3f}".encode()))
    await send({"type": "http.response.start", "status": upstream.status,
                "headers": response_headers(upstream, call.rid, extra)})
    await send({"type": "http.response.body", "body": body})
    call.overhead_seconds += time.perf_counter() - finished


async def relay_stream(
    *, call: Call, upstream: aiohttp.ClientResponse, receive: Receive, send: Send, started: float
) -> None:
    call.streamed = True
    reader = call.wire.stream_reader(call.info) if call.info is not None else None
    cache = call.cache
    if cache is not None:
        cache_record_start(call, upstream)
    extra = [*call.response_headers_extra, (b"x-tokonomics-cache", b"miss")] if cache else call.response_headers_extra
    await send({"type": "http.response.start", "status": upstream.status,
                "headers": response_headers(upstream, call.rid, extra)})
    # A client that goes away must stop the upstream too, even while it is between chunks.
    this_task = asyncio.current_task()
    finishing = False

    def on_client_gone(_: asyncio.Future[Any]) -> None:
        if not finishing and this_task is not None:
            this_task.cancel()

    gone = asyncio.ensure_future(receive())
    gone.add_done_callback(on_client_gone)
    in_proxy = 0.0
    try:
        async for chunk in upstream.content.iter_any():
            mark = time.perf_counter()
            out = reader.feed(chunk) if reader is not None else chunk
            if out:
                if cache is not None:
                    cache.record(out)  # as the client receives it: a hit replays the same chunks
                await send({"type": "http.response.body", "body": out, "more_body": True})
            in_proxy += time.perf_counter() - mark
        mark = time.perf_counter()
        finishing = True
        tail = reader.close() if reader is not None else b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        if cache is not None:
            cache.record(tail)
            cache.complete = True  # the provider ended the stream and the client has it all
        in_proxy += time.perf_counter() - mark
    except asyncio.CancelledError:
        if not gone.done() or this_task is None:
            raise  # the server is shutting down, not the client leaving
        this_task.uncancel()
        metrics.errors_total.labels(call.provider_label, "client_disconnected").inc()
    except (TimeoutError, aiohttp.ClientError):
        # The provider cut the stream (`cut_short` cuts the client's next). What it sent is read, and what
        # the reader held back (an unfinished event) reaches the client, as it would have without the proxy.
        if reader is not None:
            finishing = True
            tail = reader.close()
            if tail:
                await send({"type": "http.response.body", "body": tail, "more_body": True})
        raise
    finally:
        finishing = True
        gone.remove_done_callback(on_client_gone)
        gone.cancel()
        call.upstream_seconds = time.perf_counter() - started - in_proxy
        call.overhead_seconds += in_proxy
        if reader is not None and call.info is not None:
            usage_account(call, reader.usage, reader.served_model,
                          estimated_output=0 if reader.usage is not None else reader.estimated_output_tokens())


def cache_record_start(call: Call, upstream: aiohttp.ClientResponse) -> None:
    """A cacheable call's answer is about to be relayed: what its entry replays besides the bytes."""
    assert call.cache is not None
    call.cache.status = upstream.status
    call.cache.content_type = upstream.headers.get("Content-Type", "application/json").encode("latin-1")


def usage_account(call: Call, usage: TokenUsage | None, served: str | None, *, estimated_output: int = 0) -> None:
    """Fix the call's usage and cost: as reported, or estimated when the provider never said."""
    assert call.info is not None
    call.served_model = served or ""
    if usage is None:
        call.usage_source = "estimated"
        usage = TokenUsage(input_tokens=call.info.estimated_input_tokens, output_tokens=estimated_output)
        metrics.estimated_usage_total.labels(call.provider_label).inc()
    call.usage = usage
    call.cost_usd = None
    if call.deployment and not call.deployment_mapped and call.served_model:
        # A deployment nobody mapped: the model the provider says served it is the best evidence of its price.
        call.cost_usd = price(call, usage, call.served_model)
    if call.cost_usd is None:
        call.cost_usd = price(call, usage, call.info.model)
    provider_cost_check(call)
    if call.cost_usd is None:
        metrics.unknown_price_total.labels(call.provider_label).inc()

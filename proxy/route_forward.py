"""A routed call's forward step: its targets tried in the route's order, with retries and fallbacks, until one
answers (proxy/routing.py says the order and the policy).

An attempt fails over only before its answer starts: a refused connection, a timeout waiting for the answer,
or a status a retry may cure (429, 5xx). A retry waits out the backoff or the provider's Retry-After unless
that would pass the route's deadline (then it falls back at once); a refused connection falls back at once.
Once an answer is relayed there is no other attempt: nothing is retried after the first byte reached the
client. When every attempt failed, the client gets the last provider error as it was, or the proxy's 502/504.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from tokonomics.outbound_urls import BlockedAddress, literal_host_problem

from . import metrics
from .errors import ProxyError
from .headers import Headers, cost_header, upstream_headers, upstream_query
from .relay import Receive, Send, cut_short, relay_body, relay_stream
from .routing import (
    RETRYABLE_STATUSES,
    FormatAdapter,
    adapter_for,
    backoff_seconds,
    body_for_model,
    retry_after_seconds,
    target_order,
)
from .usage import TokenUsage

if TYPE_CHECKING:
    from .context import ProxyContext
    from .directory import EndpointEntry, RouteTarget
    from .gateway import Call

# An error body kept to pass on when every attempt failed: provider errors are small.
MAX_ERROR_BODY = 64 * 1024
MAX_RECORDED_ATTEMPTS = 20  # a record lists at most this many attempts and skips (a route has ≤ 10 targets)


@dataclass(slots=True)
class Failure:
    """An attempt that got no answer worth relaying."""

    outcome: str  # "429", "503", …, "refused", "timeout", "unreachable"
    status: int = 0  # the provider's, for a status failure
    body: bytes = b""
    content_type: bytes = b"application/json"
    retry_after: float | None = None
    retry_after_header: bytes = b""


def attempt_note(call: Call, target: RouteTarget, outcome: str, started: float | None = None) -> None:
    if len(call.attempts) < MAX_RECORDED_ATTEMPTS:
        ms = int((time.perf_counter() - started) * 1000) if started is not None else 0
        call.attempts.append({"target": target.label, "outcome": outcome, "ms": ms})


async def forward_routed(
    *, call: Call, ctx: ProxyContext, scope: dict[str, Any], rest: str, headers: Headers, body: bytes,
    receive: Receive, send: Send,
) -> None:
    route, account, info = call.route, call.account, call.info
    assert route is not None and account is not None and info is not None
    health = ctx.target_health
    deadline = call.started + route.deadline_seconds
    last: Failure | None = None
    attempts = 0
    for target in target_order(call, health):
        endpoint = account.endpoints.get(target.endpoint)
        adapter = adapter_for(call.wire.name, endpoint.wire_format, call.operation) if endpoint else None
        if endpoint is None or adapter is None:
            attempt_note(call, target, "untranslatable")
            continue
        ident = (account.id, target.endpoint, target.model)
        health.watch(ident)
        if health.is_open(ident) and last is not None:
            attempt_note(call, target, "circuit_open")  # open breakers go last: tried only if nothing else was
            continue
        for retry in range(route.retries + 1):
            if attempts >= route.max_attempts or time.perf_counter() >= deadline:
                return await _exhausted(call=call, send=send, last=last)
            attempts += 1
            started = time.perf_counter()
            failure = await _attempt(call=call, ctx=ctx, scope=scope, rest=rest, headers=headers, body=body,
                                     receive=receive, send=send, target=target, endpoint=endpoint,
                                     deadline=deadline, adapter=adapter)
            if failure is None:
                attempt_note(call, target, "ok", started)
                return None
            attempt_note(call, target, failure.outcome, started)
            metrics.errors_total.labels(endpoint.slug, "route_attempt_failed").inc()
            last = failure
            ctx.background(health.failure(ident))  # off the fallback's path: it must not wait for Redis
            if failure.outcome == "refused" or retry == route.retries:
                break  # a refused connection is not retried: the next target, now
            wait = failure.retry_after if failure.retry_after is not None else backoff_seconds(route, retry)
            if time.perf_counter() + wait >= deadline:
                break  # waiting would pass the deadline: fall back now
            await asyncio.sleep(wait)
    return await _exhausted(call=call, send=send, last=last)


async def _attempt(
    *, call: Call, ctx: ProxyContext, scope: dict[str, Any], rest: str, headers: Headers, body: bytes,
    receive: Receive, send: Send, target: RouteTarget, endpoint: EndpointEntry, deadline: float,
    adapter: FormatAdapter,
) -> Failure | None:
    """One upstream attempt at `target`: None once its answer went to the client, a Failure before that.

    Within one wire format (`adapter.translates` False, all adapter_for gives today) the request goes as the
    client sent it, its `model` set to the target's, and the answer is relayed as is. Cross-format translation
    plugs in here: the path and body for the target's format, and the answer (body or stream) back in the
    client's; the usage is then read in the target's format."""
    assert call.info is not None
    call.endpoint = endpoint
    call.info.model = target.model  # what the answer is priced as
    payload = call.info.body
    if target.model != call.requested_model:
        payload = body_for_model(payload, target.model)
    query = upstream_query(scope.get("query_string", b""), endpoint)
    url = endpoint.base_url + rest + ("?" + query.decode("latin-1") if query else "")
    if not ctx.private_urls_allowed and (problem := literal_host_problem(url)):
        return Failure("address_blocked", body=problem.encode()[:200])
    sent = upstream_headers(headers, endpoint)
    if call.span is not None:
        sent["traceparent"] = call.span.traceparent()
    limit = deadline - time.perf_counter()
    if target.timeout_seconds is not None:
        limit = min(limit, target.timeout_seconds)
    before_upstream = time.perf_counter()
    call.overhead_seconds = before_upstream - call.started - call.upstream_seconds
    ident = (call.account.id if call.account else 0, target.endpoint, target.model)
    try:
        async with asyncio.timeout(limit) as until_answer:
            async with ctx.http.request(scope["method"], URL(url, encoded=True), headers=sent, data=payload or None,
                                        allow_redirects=False) as upstream:
                until_answer.reschedule(None)  # the answer started: the read timeout alone bounds the rest
                ctx.target_health.latency_observe(ident, time.perf_counter() - before_upstream)
                if upstream.status in RETRYABLE_STATUSES:
                    error = await _error_body(upstream)
                    call.upstream_seconds += time.perf_counter() - before_upstream
                    return Failure(
                        str(upstream.status), upstream.status, error,
                        upstream.headers.get("content-type", "application/json").encode("latin-1", "replace"),
                        retry_after_seconds(upstream.headers.get("retry-after"),
                                            upstream.headers.get("retry-after-ms")),
                        upstream.headers.get("retry-after", "")[:100].encode("latin-1", "replace"),
                    )
                call.status = upstream.status
                if call.wire.streams(call.info, content_type=upstream.content_type, status=upstream.status):
                    await relay_stream(call=call, upstream=upstream, receive=receive, send=send,
                                       started=before_upstream)
                else:
                    await relay_body(call=call, upstream=upstream, send=send, started=before_upstream)
                return None
    except (TimeoutError, aiohttp.ServerTimeoutError):
        if call.status:
            cut_short(call)
        call.upstream_seconds += time.perf_counter() - before_upstream
        return Failure("timeout")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, BlockedAddress):
            return Failure("address_blocked", body=str(exc.os_error).encode()[:200])
        return Failure("refused")
    except aiohttp.ClientError:
        if call.status:
            cut_short(call)
        return Failure("unreachable")
    except ValueError as exc:
        if call.status:
            raise
        raise ProxyError(400, "invalid_request_error", f"The request cannot be forwarded: {exc}.",
                         code="invalid_request") from None


async def _error_body(upstream: aiohttp.ClientResponse) -> bytes:
    """The provider's error body, whole, up to MAX_ERROR_BODY bytes (what is past that is not kept)."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_ERROR_BODY and not upstream.content.at_eof():
        chunk = await upstream.content.read(MAX_ERROR_BODY - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _exhausted(*, call: Call, send: Send, last: Failure | None) -> None:
    """Every attempt failed (or none could be made): the client gets the last provider error as it was sent,
    else the proxy's own."""
    assert call.route is not None
    if last is None:
        raise ProxyError(502, "api_error", f"No target of route {call.route.name!r} can serve this call.",
                         code="route_no_target")
    if not last.status:
        if last.outcome == "timeout":
            raise ProxyError(504, "timeout_error", "No target of the route answered in time.", code="upstream_timeout")
        if last.outcome == "address_blocked":
            raise ProxyError(502, "api_error", f"The provider's address is refused: {last.body.decode()}",
                             code="upstream_address_blocked")
        raise ProxyError(502, "api_error", "No target of the route could be reached.", code="upstream_unreachable")
    call.status = last.status
    call.usage, call.cost_usd = TokenUsage(), Decimal(0)  # refused by the provider: nothing generated
    out = [(b"content-type", last.content_type), (b"content-length", str(len(last.body)).encode()),
           (b"x-tokonomics-request-id", call.rid.encode()), (b"x-tokonomics-cost-usd", cost_header(Decimal(0))),
           *call.response_headers_extra]
    if last.retry_after_header:
        out.append((b"retry-after", last.retry_after_header))
    await send({"type": "http.response.start", "status": last.status, "headers": out})
    await send({"type": "http.response.body", "body": last.body})

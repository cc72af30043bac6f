"""One proxied call's life: authenticate → admit (reserve) → forward → relay → settle → emit.

Everything here runs on the event loop: no ORM, no blocking I/O. Keys and accounts come from
the in-process directory, budgets from Redis scripts, and the usage record leaves as an event.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn

import aiohttp
import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from yarl import URL

from proxy.pricing import (
    PriceTable,
    catalogue_model_id,
    cost_or_none,
    dearest_cost_usd,
    default_max_output_tokens,
    price_table,
)
from proxy.usage import TokenUsage
from tokonomics.outbound_urls import BlockedAddress, literal_host_problem

from . import metrics
from .catalog import BUILTIN_PROVIDERS
from .context import ProxyContext
from .directory import AccountEntry, EndpointEntry, KeyEntry
from .errors import ProxyError
from .hooks import hooks_get
from .keys import hash_key, is_well_formed
from .paths import ProxyPath, proxy_path_parse
from .providers import WIRE_FORMATS
from .providers.base import Operation, ProviderError, RequestInfo, WireFormat, route_path
from .quota import MAX_CALL_NANOS, MAX_CALL_TOKENS, CallPlan, Counter, Denial, Reservation, Unseeded, usd_to_nanos
from .usage_bounds import MAX_LATENCY_MS, MAX_TOKENS, TEXT_LIMITS, cost_clean, int_clamp, tags_clean, text_clean

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"host", b"content-length",
    }
)
# Our own headers, and the caller's Tokonomics key, never reach the provider.
CONSUMED_HEADERS = frozenset(
    {
        b"authorization", b"x-api-key", b"x-feature-name", b"x-tenant-id", b"x-environment",
        b"x-tokonomics-tags", b"accept-encoding",
    }
)
# The provider's Date and Server are dropped, as nginx does: the ASGI server sends its own on every response
# (uvicorn always does, and cannot be told not to from the app; Daphne via tokonomics/daphne_compat.py), so
# keeping the provider's made two of each.
RESPONSE_DROPPED = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"upgrade", b"trailer", b"te",
     b"date", b"server"}
)
NANOS = Decimal(1_000_000_000)


@dataclass(slots=True)
class Call:
    """What the proxy learns about one call as it goes; becomes the usage record."""

    rid: str
    started: float  # perf_counter at accept
    created_at: float  # unix time at accept
    started_at: datetime  # the same instant, for prices that change over time
    provider: str
    wire: WireFormat
    feature: str = ""
    tenant: str = ""
    environment: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    account: AccountEntry | None = None
    key: KeyEntry | None = None
    endpoint: EndpointEntry | None = None
    info: RequestInfo | None = None
    operation: str = ""
    reservation: Reservation | None = None
    enforced: bool = True
    status: int = 0
    denied_scope: str = ""
    usage: TokenUsage | None = None
    usage_source: str = "reported"
    served_model: str = ""
    cost_usd: Decimal | None = None
    streamed: bool = False
    upstream_seconds: float = 0.0
    overhead_seconds: float = 0.0


def new_request_id() -> str:
    # Time-ordered, so records sort by arrival even when written in batches. `random` is seeded from the
    # OS and again in every forked worker; unlike os.urandom it costs no system call per request.
    return f"req_{time.time_ns() // 1_000_000:012x}{random.getrandbits(48):012x}"


def wire_for_errors(provider: str, headers: dict[bytes, bytes]) -> WireFormat:
    builtin = BUILTIN_PROVIDERS.get(provider)
    if builtin is not None:
        return WIRE_FORMATS[builtin.wire_format]
    if b"anthropic-version" in headers:
        return WIRE_FORMATS["anthropic"]
    return WIRE_FORMATS["openai"]


def parse_tags(raw: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in raw.split(",")[:10]:
        name, sep, value = pair.partition("=")
        if sep and name.strip():
            tags[name.strip()[:60]] = value.strip()[:200]
    return tags


def _attribution(headers: dict[bytes, bytes], name: bytes, field: str) -> str:
    value = headers.get(name)
    return text_clean(value.decode("latin-1"), TEXT_LIMITS[field]) if value else ""


async def handle(scope: dict[str, Any], receive: Receive, send: Send, ctx: ProxyContext) -> None:
    started = time.perf_counter()
    target = proxy_path_parse(path=scope["path"], raw_path=scope.get("raw_path"))
    headers = dict(scope["headers"])
    call = Call(
        rid=new_request_id(),
        started=started,
        created_at=(now := time.time()),
        started_at=datetime.fromtimestamp(now, UTC),
        provider=target.provider,
        wire=wire_for_errors(target.provider, headers),
        # Cleaned exactly as the usage record will be, so live counters and counters rebuilt from records
        # name the same tenant and feature.
        feature=_attribution(headers, b"x-feature-name", "feature"),
        tenant=_attribution(headers, b"x-tenant-id", "tenant"),
        environment=_attribution(headers, b"x-environment", "environment"),
        tags=tags_clean(parse_tags(headers[b"x-tokonomics-tags"].decode("latin-1")))
        if b"x-tokonomics-tags" in headers else {},
    )
    try:
        await authenticate(call=call, headers=headers, ctx=ctx, target=target)
        body = await read_body(receive=receive, headers=headers)
        operation = describe(call=call, method=scope["method"], rest=target.rest, body=body)
        await admit(call=call, ctx=ctx)
        try:
            await forward(
                call=call, ctx=ctx, scope=scope, rest=target.forwarded, headers=headers, body=body,
                operation=operation, receive=receive, send=send,
            )
        finally:
            await settle(call=call, ctx=ctx)
    except ProxyError as exc:
        call.status = exc.status
        call.denied_scope = exc.denied_scope
        call.cost_usd = Decimal(0)  # refused, or never answered: nothing was generated, nothing is owed
        await send_error(call=call, send=send, error=exc)
        await emit_unreserved(call=call, ctx=ctx)


async def authenticate(*, call: Call, headers: dict[bytes, bytes], ctx: ProxyContext, target: ProxyPath) -> None:
    raw = headers.get(b"authorization", b"")
    token = raw[7:].strip().decode("latin-1") if raw[:7].lower() == b"bearer " else ""
    if not token.startswith("mk_"):
        token = headers.get(b"x-api-key", b"").decode("latin-1").strip() or token
    if not token:
        raise ProxyError(401, "authentication_error", "Missing Tokonomics key: send Authorization: Bearer mk_… "
                         "or x-api-key: mk_…")
    if not is_well_formed(token):
        raise ProxyError(401, "authentication_error", "Invalid Tokonomics key.", code="invalid_api_key")
    key = await ctx.directory.key(hash_key(token))
    if key is None or not key.is_live(time.time()):
        reason = "unknown" if key is None else ("revoked" if key.revoked else "expired")
        raise ProxyError(401, "authentication_error", f"This Tokonomics key is {reason}.", code="invalid_api_key")
    account = await ctx.directory.account(key.account_id)
    if account is None:
        raise ProxyError(401, "authentication_error", "This Tokonomics key is unknown.", code="invalid_api_key")
    call.key, call.account = key, account
    call.environment = call.environment or key.environment or "production"
    if target.problem:
        # After the key (the refusal is recorded in its account), before anything reads the path.
        raise ProxyError(400, "invalid_request_error", f"Invalid proxy path: {target.problem}.", code="invalid_path")
    endpoint = account.endpoints.get(call.provider)
    if endpoint is None:
        raise ProxyError(
            403, "permission_error", f"Provider endpoint {call.provider!r} is not configured for this account.",
            code="unknown_provider",
        )
    call.endpoint = endpoint
    call.wire = WIRE_FORMATS[endpoint.wire_format]


async def read_body(*, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
    limit = settings.TOKONOMICS_MAX_BODY_BYTES
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> ProxyError:
    return ProxyError(413, "invalid_request_error", f"Request body is over the {limit}-byte limit.",
                      code="request_too_large")


def describe(*, call: Call, method: str, rest: str, body: bytes) -> Operation | None:
    """Which metered operation this is, the model, and the request's own limits."""
    assert call.account is not None and call.key is not None
    operation = call.wire.operation_for(method, rest)
    if operation is None:
        route = route_path(rest)
        if method == "GET" and (route == "/models" or route.startswith("/models/")):
            call.operation = "models"
            call.cost_usd = Decimal(0)  # a free listing: forwarded as is, recorded with no tokens and no cost
            return None
        if not call.account.allow_unmetered_routes:
            raise ProxyError(
                403, "permission_error",
                f"{method} {rest} cannot be metered by Tokonomics, so it is refused; an account admin can allow "
                "unmetered routes.", code="unmetered_route",
            )
        call.operation = "unmetered"
        return None
    try:
        call.info = call.wire.parse_request(operation, body)
    except ProviderError as exc:
        raise ProxyError(exc.status, exc.error_type, exc.message, code=exc.code) from None
    call.operation = operation.value
    if len(call.info.model) > TEXT_LIMITS["model"]:
        # No model is named that long; refused before any lookup, whose cost (and caches) would grow with it.
        raise ProxyError(400, "invalid_request_error", f"The model name is over {TEXT_LIMITS['model']} characters.",
                         code="invalid_model")
    if not call.key.allows_model(call.info.model):
        raise ProxyError(
            403, "permission_error", f"This key may not use model {call.info.model!r}.", code="model_not_allowed"
        )
    return operation


def price(call: Call, usage: TokenUsage, model: str) -> Decimal | None:
    """The settlement's pricing; the estimate reads the same prices at the same instant (`prices_of`)."""
    return cost_or_none(prices_of(call, model), usage)


def prices_of(call: Call, model: str) -> PriceTable | None:
    assert call.endpoint is not None and call.account is not None
    return price_table(
        provider_id=call.endpoint.pricing_provider or None,
        base_url=call.endpoint.base_url,
        model=model,
        at=call.started_at,
        override=call.account.prices.get((call.provider, model)),
    )


def estimate(call: Call) -> tuple[int, int]:
    """(estimated cost in nano-dollars, estimated tokens) reserved before the call.

    The counts are priced the dearest way the provider may bill them (input read from or written to a
    cache, output as reasoning), so the settlement of the same counts never costs more.
    """
    info = call.info
    if info is None:
        return 0, 0
    assert call.endpoint is not None
    output = info.max_output_tokens
    if output is None:
        output = 0 if info.operation is Operation.EMBEDDINGS else default_max_output_tokens(
            call.endpoint.pricing_provider or None, info.model
        ) * info.choices
    # n = 10^9 or max_tokens = 10^18 is the provider's to refuse; here it must only make a large estimate,
    # not one past what Decimal's 28 digits can price (quota caps what reaches Redis).
    output = min(output, MAX_CALL_TOKENS)
    tokens = info.estimated_input_tokens
    table = prices_of(call, info.model)
    if table is None:
        return 0, tokens + output
    # Anthropic writes a cache only where the request asks it to.
    cache_writes = call.wire.name != "anthropic" or b'"cache_control"' in info.body
    try:
        cost = dearest_cost_usd(table, input_tokens=tokens, output_tokens=output, cache_writes=cache_writes,
                                cache_writes_1h=cache_writes and b'"1h"' in info.body)
    except ArithmeticError:  # an account price so high the product overflows: past any budget anyway
        return MAX_CALL_NANOS, tokens + output
    return usd_to_nanos(cost), tokens + output


async def admit(*, call: Call, ctx: ProxyContext) -> None:
    assert call.account is not None and call.key is not None
    # The record's own instant: counters rebuilt from records must put the call in the same period.
    plan = ctx.quota.plan_for(call.account, call.key, feature=call.feature, tenant=call.tenant, now=call.created_at)
    if not plan.caps_anything:
        return  # nothing caps this call: no round trip before it (its record still goes out after)
    _refuse_unpriced(call=call, counters=plan.counters)
    estimate_nanos, estimated_tokens = estimate(call)
    if ctx.breaker.is_open:
        _admit_without_redis(call=call, counters=plan.counters)
        return
    try:
        verdict = await _reserve(call, ctx, plan, estimate_nanos, estimated_tokens)
    except ResponseError:
        # Redis answered but refused this call's script: not an outage, so the breaker stays closed for
        # every other account; this call is handled as if Redis were unavailable.
        log.exception("the reserve script failed for call %s", call.rid)
        _admit_without_redis(call=call, counters=plan.counters)
        return
    except (TimeoutError, RedisError, OSError) as exc:
        ctx.breaker.trip()
        if isinstance(exc, TimeoutError | RedisTimeoutError):
            # The script may still run once Redis catches up: give back whatever it reserves then.
            stale = Reservation(call.rid, call.account.id, call.key.id, plan.counters, estimate_nanos,
                                estimated_tokens)
            ctx.quota.defer(reservation=stale, actual_nanos=0, actual_tokens=0)
        _admit_without_redis(call=call, counters=plan.counters)
        return
    if verdict is None:  # Redis answers, but the counters could not be seeded
        _admit_without_redis(call=call, counters=plan.counters)
        return
    ctx.breaker.reset()
    ctx.quota.replay_deferred_soon()
    if isinstance(verdict, Denial):
        raise _denial_error(call, verdict)
    call.reservation = verdict
    metrics.add(metrics.reserved_usd(metric_provider(call)), verdict.estimate_nanos / 1e9)


def _refuse_unpriced(*, call: Call, counters: list[Counter]) -> None:
    """A hard budget cannot cap a model without a price: it would reserve and settle nothing (CONTRACT §1)."""
    assert call.account is not None
    if (call.info is None or call.account.allow_unpriced_models or not any(c.hard for c in counters)
            or prices_of(call, call.info.model) is not None):
        return
    call.usage, call.cost_usd = TokenUsage(), Decimal(0)  # recorded as a denial: nothing used, nothing owed
    raise ProxyError(
        403, "permission_error", f"Model {call.info.model!r} has no price, and a hard budget covers this call; an "
        "account admin can add a price for it or allow unpriced models.", code="model_unpriced",
    )


async def _reserve(
    call: Call, ctx: ProxyContext, plan: CallPlan, estimate_nanos: int, estimated_tokens: int
) -> Reservation | Denial | None:
    """The verdict, after seeding the account's counters if Redis lacks them; None if they cannot be."""
    assert call.account is not None
    for _ in range(3):  # a layout that changes while seeding needs one more round
        try:
            return await ctx.quota.reserve(rid=call.rid, plan=plan, estimate_nanos=estimate_nanos,
                                           estimated_tokens=estimated_tokens)
        except Unseeded as unseeded:
            try:
                await reseed(account_id=call.account.id, fingerprint=unseeded.fingerprint, ctx=ctx)
            except (TimeoutError, RedisError, OSError, DatabaseError):
                log.exception("could not seed the budget counters of account %s", call.account.id)
                return None
    return None


# One rebuild at a time per (proxy context, account), shared by every call that finds the counters unseeded.
_reseeding: dict[tuple[int, int], asyncio.Future[None]] = {}


async def reseed(*, account_id: int, fingerprint: str, ctx: ProxyContext) -> None:
    """Rebuild an account's counters from its usage records (first sight, a changed budget layout, or
    Redis came back empty)."""
    counters_rebuild = hooks_get().counters_rebuild

    def rebuild() -> None:
        close_old_connections()
        try:
            counters_rebuild(account_id=account_id, fingerprint=fingerprint)
        finally:
            connections.close_all()  # rare: do not pin a connection to an executor thread

    slot = (id(ctx), account_id)
    flight = _reseeding.get(slot)
    if flight is None:
        flight = asyncio.ensure_future(sync_to_async(rebuild, thread_sensitive=False)())
        _reseeding[slot] = flight
        flight.add_done_callback(lambda _: _reseeding.pop(slot, None))
    await asyncio.shield(flight)


def _admit_without_redis(*, call: Call, counters: list[Counter]) -> None:
    assert call.account is not None and call.key is not None
    policy = call.account.on_redis_unavailable
    if policy == "closed" or (policy == "default" and any(c.hard for c in counters)):
        raise ProxyError(
            503, "service_unavailable", "Budget enforcement is unavailable right now; please retry shortly.",
            code="enforcement_unavailable",
        )
    call.enforced = False
    metrics.unenforced_total.labels(metric_provider(call)).inc()
    if counters:
        # Nothing is reserved, but the cost still reaches the counters once Redis answers.
        call.reservation = Reservation(call.rid, call.account.id, call.key.id, counters, 0, 0, held=False)


def _denial_error(call: Call, denial: Denial) -> ProxyError:
    headers = [(b"x-tokonomics-denied-scope", denial.scope.encode())]
    if denial.retry_after_ms >= 0:  # a `total` budget never resets: no Retry-After
        seconds = max(1, -(-denial.retry_after_ms // 1000))
        headers.append((b"retry-after", str(seconds).encode()))
    metrics.budget_denials_total.labels(denial.scope).inc()
    if denial.scope == "plan":
        return ProxyError(429, "plan_limit_exceeded", "The plan's monthly request limit is reached.",
                          code="plan_request_limit", denied_scope="plan", headers=headers)
    if denial.scope.startswith("rate_"):
        what = {"rate_requests": "requests per minute", "rate_tokens": "tokens per minute",
                "rate_concurrency": "concurrent requests"}[denial.scope]
        return ProxyError(429, "rate_limit_exceeded", f"This key's limit of {what} is reached.",
                          code=denial.scope, denied_scope=denial.scope, headers=headers)
    scope_name = denial.scope.removesuffix("_budget")
    return ProxyError(429, "budget_exceeded", f"The {scope_name} budget would be exceeded by this call.",
                      code=denial.scope, denied_scope=denial.scope, headers=headers)


def upstream_headers(headers: dict[bytes, bytes], endpoint: EndpointEntry) -> dict[str, str]:
    out = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers.items()
        if name not in HOP_BY_HOP and name not in CONSUMED_HEADERS and not name.startswith(b"x-tokonomics-")
    }
    # Ask for an uncompressed body: usage must be readable, and loopback/LAN bandwidth is cheap.
    out["Accept-Encoding"] = "identity"
    if endpoint.credential:
        if endpoint.wire_format == "anthropic":
            out["x-api-key"] = endpoint.credential
        else:
            out["Authorization"] = f"Bearer {endpoint.credential}"
    return out


def response_headers(upstream: aiohttp.ClientResponse, call: Call, extra: list[tuple[bytes, bytes]]) -> list:
    out = [
        (name, value)
        for name, value in upstream.raw_headers
        if name.lower() not in RESPONSE_DROPPED
    ]
    out.append((b"x-tokonomics-request-id", call.rid.encode()))
    out.extend(extra)
    return out


async def forward(
    *,
    call: Call,
    ctx: ProxyContext,
    scope: dict[str, Any],
    rest: str,
    headers: dict[bytes, bytes],
    body: bytes,
    operation: Operation | None,
    receive: Receive,
    send: Send,
) -> None:
    assert call.endpoint is not None
    query = scope.get("query_string", b"")
    # `rest` is the canonical path the call was metered by (proxy/paths.py), never the raw one.
    url = call.endpoint.base_url + rest + ("?" + query.decode("latin-1") if query else "")
    payload = call.info.body if call.info is not None else body
    before_upstream = time.perf_counter()
    call.overhead_seconds = before_upstream - call.started
    if not ctx.private_urls_allowed and (problem := literal_host_problem(url)):
        raise _address_blocked(call, problem)
    try:
        async with ctx.http.request(
            scope["method"], URL(url, encoded=True), headers=upstream_headers(headers, call.endpoint),
            data=payload or None, allow_redirects=False,
        ) as upstream:
            call.status = upstream.status
            if upstream.content_type == "text/event-stream":
                await relay_stream(call=call, upstream=upstream, receive=receive, send=send, started=before_upstream)
            else:
                await relay_body(call=call, upstream=upstream, send=send, started=before_upstream)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        if call.status:
            _cut_short(call)
        metrics.errors_total.labels(metric_provider(call), "upstream_timeout").inc()
        raise ProxyError(
            504, "timeout_error", "The provider did not answer in time.", code="upstream_timeout"
        ) from None
    except aiohttp.ClientError as exc:
        if call.status:
            _cut_short(call)
        if isinstance(getattr(exc, "os_error", None), BlockedAddress):
            raise _address_blocked(call, str(exc.os_error)) from None
        metrics.errors_total.labels(metric_provider(call), "upstream_unreachable").inc()
        raise ProxyError(502, "api_error", f"The provider could not be reached ({type(exc).__name__}).",
                         code="upstream_unreachable") from None
    except ValueError as exc:
        if call.status:
            raise
        # A server that lets control characters through in the query or a header (Daphne does); the
        # upstream client refuses to send them.
        raise ProxyError(400, "invalid_request_error", f"The request cannot be forwarded: {exc}.",
                         code="invalid_request") from None


def _address_blocked(call: Call, problem: str) -> ProxyError:
    metrics.errors_total.labels(metric_provider(call), "upstream_address_blocked").inc()
    return ProxyError(502, "api_error", f"The provider's address is refused: {problem}",
                      code="upstream_address_blocked")


class UpstreamCut(Exception):
    """The provider cut a response the client had started to receive.

    Raised out of the application once the call is settled: there is no ASGI message that aborts a
    response, and an exception after `http.response.start` is how a server is told to close the client's
    connection without a terminator (uvicorn; Daphne with tokonomics/daphne_compat.py). Ending the body
    cleanly would pass a truncated stream off as a complete one; returning leaves Daphne's client waiting.
    """


def _cut_short(call: Call) -> NoReturn:
    """The upstream failed after it answered: what was seen is recorded as an estimate, and the client
    learns of the cut the way it would have without the proxy."""
    metrics.errors_total.labels(metric_provider(call), "upstream_cut_short").inc()
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
        _account_usage(call, usage, served)
    elif call.info is not None:
        # The provider refused the call: nothing was generated, nothing is owed.
        call.usage, call.cost_usd = TokenUsage(), Decimal(0)
    # Every non-streamed answer says its cost (CONTRACT §1): "unknown" only for an unmetered route or model.
    extra = [(b"content-length", str(len(body)).encode()), (b"x-tokonomics-cost-usd", _cost_header(call.cost_usd))]
    overhead = call.overhead_seconds + (time.perf_counter() - finished)
    extra.append((b"x-tokonomics-overhead-ms", f"{overhead * 1000:.3f}".encode()))
    await send({"type": "http.response.start", "status": upstream.status,
                "headers": response_headers(upstream, call, extra)})
    await send({"type": "http.response.body", "body": body})
    call.overhead_seconds += time.perf_counter() - finished


def _cost_header(cost: Decimal | None) -> bytes:
    return b"unknown" if cost is None else f"{cost:.9f}".encode()


class ClientGone(Exception):
    pass


async def relay_stream(
    *, call: Call, upstream: aiohttp.ClientResponse, receive: Receive, send: Send, started: float
) -> None:
    call.streamed = True
    reader = call.wire.stream_reader(call.info) if call.info is not None else None
    await send({"type": "http.response.start", "status": upstream.status,
                "headers": response_headers(upstream, call, [])})
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
                await send({"type": "http.response.body", "body": out, "more_body": True})
            in_proxy += time.perf_counter() - mark
        mark = time.perf_counter()
        finishing = True
        tail = reader.close() if reader is not None else b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        in_proxy += time.perf_counter() - mark
    except asyncio.CancelledError:
        if not gone.done() or this_task is None:
            raise  # the server is shutting down, not the client leaving
        this_task.uncancel()
        metrics.errors_total.labels(metric_provider(call), "client_disconnected").inc()
    finally:
        finishing = True
        gone.remove_done_callback(on_client_gone)
        gone.cancel()
        call.upstream_seconds = time.perf_counter() - started - in_proxy
        call.overhead_seconds += in_proxy
        if reader is not None and call.info is not None:
            _account_usage(call, reader.usage, reader.served_model,
                           estimated_output=0 if reader.usage is not None else reader.estimated_output_tokens())


def _account_usage(call: Call, usage: TokenUsage | None, served: str | None, *, estimated_output: int = 0) -> None:
    """Fix the call's usage and cost: as reported, or estimated when the provider never said."""
    assert call.info is not None
    call.served_model = served or ""
    if usage is None:
        call.usage_source = "estimated"
        usage = TokenUsage(input_tokens=call.info.estimated_input_tokens, output_tokens=estimated_output)
        metrics.estimated_usage_total.labels(metric_provider(call)).inc()
    call.usage = usage
    call.cost_usd = price(call, usage, call.info.model)
    if call.cost_usd is None:
        metrics.unknown_price_total.labels(metric_provider(call)).inc()


def usage_event(call: Call) -> bytes:
    """The call's usage record as it leaves for the ledger. Attribution was cleaned as the call was read
    (`handle`); what else a client or an upstream decided (the slug, the model names, the counts, the cost)
    is bounded here, so the record always fits its columns (proxy/usage_bounds.py)."""
    usage = call.usage or TokenUsage()
    assert call.account is not None
    return orjson.dumps(
        {
            "request_id": call.rid,
            "account_id": call.account.id,
            "key_id": call.key.id if call.key else None,
            "feature": call.feature,
            "tenant": call.tenant,
            "environment": call.environment,
            "tags": call.tags,
            "provider": call.endpoint.slug if call.endpoint else text_clean(call.provider, TEXT_LIMITS["provider"]),
            "model": text_clean(call.info.model, TEXT_LIMITS["model"]) if call.info else "",
            "served_model": text_clean(call.served_model, TEXT_LIMITS["served_model"]),
            "operation": call.operation,
            "input_tokens": int_clamp(usage.input_tokens, MAX_TOKENS),
            "output_tokens": int_clamp(usage.output_tokens, MAX_TOKENS),
            "cached_input_tokens": int_clamp(usage.cached_input_tokens, MAX_TOKENS),
            "cache_write_tokens": int_clamp(usage.cache_write_tokens, MAX_TOKENS),
            "reasoning_tokens": int_clamp(usage.reasoning_tokens, MAX_TOKENS),
            "cost_usd": None if call.cost_usd is None else cost_clean(str(call.cost_usd)),
            "latency_ms": int_clamp(int((time.perf_counter() - call.started) * 1000), MAX_LATENCY_MS),
            "status_code": call.status,
            "denied_scope": call.denied_scope,
            "streamed": call.streamed,
            "usage_source": call.usage_source,
            "enforced": call.enforced,
            "created_at": call.created_at,
        }
    )


def metric_provider(call: Call) -> str:
    """The provider label: a provider endpoint of the caller's account, never a slug as the URL spelt it
    (a made-up one is refused with 403, and must not add series to /metrics either)."""
    return call.endpoint.slug if call.endpoint is not None else metrics.UNKNOWN


def metric_model(call: Call) -> str:
    """The model label: a model the account prices itself, else the catalogue's name for it, else unknown;
    "" when the call names none."""
    model = call.info.model if call.info is not None else ""
    if not model or call.account is None or call.endpoint is None:
        return model and metrics.UNKNOWN
    if (call.endpoint.slug, model) in call.account.prices:
        return model
    return catalogue_model_id(provider_id=call.endpoint.pricing_provider or None, base_url=call.endpoint.base_url,
                              model=model) or metrics.UNKNOWN


def _observe(call: Call) -> None:
    try:
        _observe_series(call)
    except (ValueError, OverflowError):
        log.exception("could not count call %s in the metrics", call.rid)


def _observe_series(call: Call) -> None:
    series = metrics.call_series(metric_provider(call), metric_model(call), call.feature, call.environment,
                                 call.status, call.streamed)
    metrics.add(series.requests)
    usage = call.usage
    if usage is not None:
        for kind, amount in (
            ("input", usage.input_tokens), ("output", usage.output_tokens), ("cached_input", usage.cached_input_tokens),
            ("cache_write", usage.cache_write_tokens), ("reasoning", usage.reasoning_tokens),
        ):
            if amount:
                metrics.add(series.token_series(kind), amount)
    if call.cost_usd:
        metrics.add(series.cost, float(call.cost_usd))
    metrics.observe(series.overhead, call.overhead_seconds)
    if call.upstream_seconds:
        metrics.observe(series.upstream, call.upstream_seconds)


async def settle(*, call: Call, ctx: ProxyContext) -> None:
    """Replace the reservation with the actual cost and queue the usage event, in one round trip.

    Runs in a `finally`: upstream errors, timeouts and client disconnects all settle. A call that
    never got an upstream answer gives its reservation back here, and the error path records it.
    A settle that cannot reach Redis is replayed once it answers again.
    """
    reservation = call.reservation
    if call.status == 0:
        call.reservation = None
        if reservation is not None and reservation.held:
            await _settle_or_defer(ctx, reservation, 0, 0, b"")
        return
    event = usage_event(call)
    if reservation is None:
        await _emit(ctx, call, event)
    else:
        usage = call.usage or TokenUsage()
        actual_nanos = usd_to_nanos(call.cost_usd or Decimal(0))
        await _settle_or_defer(ctx, reservation, actual_nanos, usage.input_tokens + usage.output_tokens, event)
    _observe(call)  # after the record has left: a metric must never cost one


async def _settle_or_defer(ctx: ProxyContext, reservation: Reservation, nanos: int, tokens: int, event: bytes) -> None:
    if not ctx.breaker.is_open:
        try:
            await ctx.quota.settle(reservation=reservation, actual_nanos=nanos, actual_tokens=tokens, event=event)
            return
        except ResponseError:
            log.exception("the settle script failed for %s; deferred", reservation.rid)  # not an outage
        except (TimeoutError, RedisError, OSError):
            ctx.breaker.trip()
    ctx.quota.defer(reservation=reservation, actual_nanos=nanos, actual_tokens=tokens)
    if event:
        ctx.pending_events.append((reservation.account_id, event))  # the record must not be lost


async def emit_unreserved(*, call: Call, ctx: ProxyContext) -> None:
    """Record a call that reserved nothing: a denial, a bad request, an unreachable upstream."""
    if call.account is None:
        return  # no account to attribute an unauthenticated call to
    if call.reservation is not None:
        # The upstream failed after admission: give the reservation back, record zero cost.
        await settle(call=call, ctx=ctx)
        return
    await _emit(ctx, call, usage_event(call))
    _observe(call)


async def _emit(ctx: ProxyContext, call: Call, event: bytes) -> None:
    assert call.account is not None
    if ctx.breaker.is_open:
        ctx.pending_events.append((call.account.id, event))
        return
    try:
        await ctx.quota.record_only(account_id=call.account.id, event=event)
    except (TimeoutError, RedisError, OSError):
        ctx.breaker.trip()
        ctx.pending_events.append((call.account.id, event))


async def send_error(*, call: Call, send: Send, error: ProxyError) -> None:
    body = call.wire.error_body(status=error.status, error_type=error.error_type, message=error.message,
                                code=error.code)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-tokonomics-request-id", call.rid.encode()),
        (b"x-tokonomics-cost-usd", _cost_header(Decimal(0))),  # the proxy's own answers cost nothing
        *error.headers,
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""One proxied call's life, as its steps: authenticate → read_body → describe → admit → guardrails_input
(a key with a policy) → cache_lookup → forward (or forward_routed for a route, or cache_replay on a hit) →
settle → cache_store (or, for a call refused or never answered, send_error → emit_unreserved).

Everything here runs on the event loop: no ORM, no blocking I/O. Keys and accounts come from
the in-process directory, budgets from Redis scripts, and the usage record leaves as an event.
The steps lean on: headers.py (what the headers say, what goes upstream and back), admission.py
(estimate, price, and the refusals a verdict becomes), quota.py (Redis, and what to do while it is
down), relay.py (the answer on its way to the client), call_record.py (the usage event and metrics),
cache_steps.py (the opt-in response cache: lookup, replay, store).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
from django.conf import settings
from yarl import URL

from tokonomics.outbound_urls import BlockedAddress, literal_host_problem

from . import headers as call_headers
from . import metrics
from .admission import denial_error, estimate, unenforced_admit, unpriced_refuse
from .budgets import nanos_to_usd, usd_to_nanos
from .cache_steps import cache_lookup, cache_replay, cache_store
from .call_record import call_log, call_observe, usage_event
from .context import ProxyContext
from .directory import AccountEntry, EndpointEntry, KeyEntry, RouteEntry
from .errors import ProxyError
from .guardrail_step import guardrails_input
from .headers import Headers, cost_header, upstream_headers, upstream_query
from .keys import hash_key, is_well_formed
from .paths import ProxyPath, proxy_path_parse, version_dedupe
from .providers import WIRE_FORMATS
from .providers.base import ProviderError, RequestInfo, WireFormat
from .quota import Denial, Reservation
from .relay import Receive, Send, cut_short, relay_body, relay_stream
from .route_forward import forward_routed
from .routing import downgrade_apply, downgrade_estimates, route_estimate, route_resolve, routing_saving
from .usage import TokenUsage
from .usage_bounds import TEXT_LIMITS

if TYPE_CHECKING:
    from .guardrails.policy import GuardrailSession
    from .response_cache import CacheCall
    from .tracing import CallSpan

__all__ = ["Call", "Receive", "Send", "handle"]


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
    session: str = ""  # X-Tokonomics-Session: one agent run (a budget scope like tenant)
    session_name: str = ""
    session_git: str = ""  # the run's git context, as `tokonomics run` sends it
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
    estimate_nanos: int = 0  # what the call asked to reserve: a budget denial's record shows it
    usage: TokenUsage | None = None
    usage_source: str = "reported"
    served_model: str = ""
    deployment: str = ""  # an Azure deployment the call went to ("" elsewhere)
    deployment_mapped: bool = False  # whether the endpoint says which model that deployment serves
    cost_usd: Decimal | None = None
    streamed: bool = False
    upstream_seconds: float = 0.0
    overhead_seconds: float = 0.0
    cache: CacheCall | None = None  # a call the account's response cache may answer or keep (cache_steps.py)
    cache_hit: bool = False  # answered from the cache: no upstream call, nothing owed
    cache_saved_usd: Decimal | None = None  # a hit: what the call would have cost
    error_code: str = ""  # the proxy's own refusal, by its code (never its message): for the trace
    span: CallSpan | None = None  # the call's trace span, when tracing is on (proxy/tracing.py)
    # Routing (proxy/routing.py): the route the model named, the model the client asked for, each target's
    # estimate, and every attempt as {target, outcome, ms}; all empty for a call that names no route.
    route: RouteEntry | None = None
    requested_model: str = ""
    route_estimates: dict[str, int] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    downgraded_from: str = ""  # the model a budget's downgrade replaced (X-Tokonomics-Downgraded-From)
    downgrade_budget_id: int = 0  # the budget whose threshold it was (for the budget.downgraded event)
    routing_saved_usd: Decimal | None = None
    saving_baseline: tuple[EndpointEntry, str] | None = None  # what the saving is against: (endpoint, model)
    response_headers_extra: list[tuple[bytes, bytes]] = field(default_factory=list)
    guardrails: GuardrailSession | None = None  # the key's policy at work on this call (proxy/guardrail_step.py)

    @property
    def provider_label(self) -> str:
        """The provider label of metrics: a provider endpoint of the caller's account, never a slug as the
        URL spelt it (a made-up one is refused with 403, and must not add series to /metrics either)."""
        return self.endpoint.slug if self.endpoint is not None else metrics.UNKNOWN


def new_request_id() -> str:
    # Time-ordered, so records sort by arrival even when written in batches. `random` is seeded from the
    # OS and again in every forked worker; unlike os.urandom it costs no system call per request.
    return f"req_{time.time_ns() // 1_000_000:012x}{random.getrandbits(48):012x}"


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
        wire=call_headers.wire_for_errors(target.provider, headers),
        feature=call_headers.attribution(headers, b"x-feature-name", "feature"),
        tenant=call_headers.attribution(headers, b"x-tenant-id", "tenant"),
        environment=call_headers.attribution(headers, b"x-environment", "environment"),
        session=call_headers.attribution(headers, b"x-tokonomics-session", "session"),
        session_name=call_headers.attribution(headers, b"x-tokonomics-session-name", "session_name"),
        session_git=call_headers.attribution(headers, b"x-tokonomics-session-git", "session_git"),
        tags=call_headers.tags(headers),
    )
    if ctx.tracing is None:
        await steps(call=call, scope=scope, receive=receive, send=send, ctx=ctx, target=target, headers=headers)
        return
    tracing = ctx.tracing
    span = call.span = tracing.span_start(call=call, headers=headers)
    try:
        await steps(call=call, scope=scope, receive=receive, send=send, ctx=ctx, target=target, headers=headers)
    except BaseException as exc:  # a cut stream, a cancelled call: the span says so, the exception goes on
        tracing.span_end(span=span, call=call, failure=exc)
        raise
    tracing.span_end(span=span, call=call)


async def steps(*, call: Call, scope: dict[str, Any], receive: Receive, send: Send, ctx: ProxyContext,
              target: ProxyPath, headers: Headers) -> None:
    """The call's steps, and the answer to a call refused or never answered."""
    try:
        await authenticate(call=call, headers=headers, query=scope.get("query_string", b""), ctx=ctx, target=target)
        body = await read_body(receive=receive, headers=headers)
        describe(call=call, method=scope["method"], rest=target.rest, body=body)
        await admit(call=call, ctx=ctx)
        if call.key is not None and call.key.guardrails is not None:  # no policy: this check is all it costs
            guardrails_input(call)  # before the lookup: the cache sees the request as it is sent
        answer = None
        if call.account is not None and call.account.cache is not None:  # off (the default): not even a call
            answer = await cache_lookup(call=call, ctx=ctx, method=scope["method"], rest=target.forwarded,
                                        query=scope.get("query_string", b""), headers=headers)
        try:
            if answer is not None:
                await cache_replay(call=call, answer=answer, send=send)
            elif call.route is None:
                await forward(call=call, ctx=ctx, scope=scope, rest=target.forwarded, headers=headers, body=body,
                              receive=receive, send=send)
            else:
                await forward_routed(call=call, ctx=ctx, scope=scope, rest=target.forwarded, headers=headers,
                                     body=body, receive=receive, send=send)
        finally:
            await settle(call=call, ctx=ctx)
        if call.cache is not None:
            await cache_store(call=call, ctx=ctx)
    except ProxyError as exc:
        call.status = exc.status
        call.denied_scope = exc.denied_scope
        call.error_code = exc.code or exc.error_type
        call.cost_usd = Decimal(0)  # refused, or never answered: nothing was generated, nothing is owed
        await send_error(call=call, send=send, error=exc)
        await emit_unreserved(call=call, ctx=ctx)


async def authenticate(
    *, call: Call, headers: Headers, query: bytes, ctx: ProxyContext, target: ProxyPath
) -> None:
    token = call_headers.presented_key(headers, query)
    if not token:
        raise ProxyError(401, "authentication_error", "Missing Tokonomics key: send Authorization: Bearer mk_…, "
                         "x-api-key: mk_… or x-goog-api-key: mk_…")
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
    version_dedupe(target, endpoint.base_url)


async def read_body(*, receive: Receive, headers: Headers) -> bytes:
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


def describe(*, call: Call, method: str, rest: str, body: bytes) -> None:
    """Which metered operation this is, the model, and the request's own limits."""
    assert call.account is not None and call.key is not None
    if problem := call.wire.path_problem(rest):
        raise ProxyError(400, "invalid_request_error", f"Invalid proxy path: {problem}.", code="invalid_path")
    operation = call.wire.operation_for(method, rest)
    if operation is None:
        free = call.wire.free_operation(method, rest)
        if free is not None:
            call.operation = free
            call.cost_usd = Decimal(0)  # the provider bills nothing: forwarded as is, recorded at $0
            return
        if not call.account.allow_unmetered_routes:
            raise ProxyError(
                403, "permission_error",
                f"{method} {rest} cannot be metered by Tokonomics, so it is refused; an account admin can allow "
                "unmetered routes.", code="unmetered_route",
            )
        call.operation = "unmetered"
        return
    try:
        call.info = call.wire.request_info(operation, body, path=rest)
    except ProviderError as exc:
        raise ProxyError(exc.status, exc.error_type, exc.message, code=exc.code) from None
    call.operation = operation.value
    deployment_resolve(call=call, rest=rest)
    if len(call.info.model) > TEXT_LIMITS["model"]:
        # No model is named that long; refused before any lookup, whose cost (and caches) would grow with it.
        raise ProxyError(400, "invalid_request_error", f"The model name is over {TEXT_LIMITS['model']} characters.",
                         code="invalid_model")
    if not call.key.allows_model(call.info.model):
        raise ProxyError(
            403, "permission_error", f"This key may not use model {call.info.model!r}.", code="model_not_allowed"
        )
    if call.account.routes:
        route_resolve(call)


def deployment_resolve(*, call: Call, rest: str) -> None:
    """An Azure deployment (in the path, or the body's `model` on the v1 routes) becomes the model the
    endpoint maps it to. Unmapped, the deployment's name stands for the model (priced if it is one), and the
    settlement prices the model the response names."""
    assert call.info is not None and call.endpoint is not None
    deployment = call.wire.path_model(rest)
    if deployment is None and call.wire.name != "azure-openai":
        return
    name = deployment if deployment is not None else call.info.model
    model = call.endpoint.deployments.get(name)
    call.deployment = name
    call.info.model = model or name
    call.deployment_mapped = model is not None


async def admit(*, call: Call, ctx: ProxyContext) -> None:
    assert call.account is not None and call.key is not None
    # The record's own instant: counters rebuilt from records must put the call in the same period.
    plan = ctx.quota.plan_for(call.account, call.key, feature=call.feature, tenant=call.tenant,
                                  session=call.session, now=call.created_at)
    if not plan.caps_anything:
        return  # nothing caps this call: no round trip before it (its record still goes out after)
    unpriced_refuse(call=call, counters=plan.counters)
    estimate_nanos, estimated_tokens = estimate(call) if call.route is None else route_estimate(call)
    call.estimate_nanos = estimate_nanos
    verdict = await ctx.quota.admit(
        rid=call.rid, plan=plan, estimate_nanos=estimate_nanos, estimated_tokens=estimated_tokens,
        downgrade_estimates=downgrade_estimates(call, plan) if plan.downgrades else None,
    )
    if verdict is None:
        unenforced_admit(call=call, counters=plan.counters)
    elif isinstance(verdict, Denial):
        raise denial_error(verdict)
    else:
        call.reservation = verdict
        if verdict.downgraded_by is not None:
            downgrade_apply(call, verdict.downgraded_by)
        metrics.add(metrics.reserved_usd(call.provider_label), float(nanos_to_usd(verdict.estimate_nanos)))


async def forward(
    *,
    call: Call,
    ctx: ProxyContext,
    scope: dict[str, Any],
    rest: str,
    headers: Headers,
    body: bytes,
    receive: Receive,
    send: Send,
) -> None:
    assert call.endpoint is not None
    query = upstream_query(scope.get("query_string", b""), call.endpoint)
    # `rest` is the canonical path the call was metered by (proxy/paths.py), never the raw one.
    url = call.endpoint.base_url + rest + ("?" + query.decode("latin-1") if query else "")
    payload = call.info.body if call.info is not None else body
    before_upstream = time.perf_counter()
    call.overhead_seconds = before_upstream - call.started
    if not ctx.private_urls_allowed and (problem := literal_host_problem(url)):
        raise _address_blocked(call, problem)
    try:
        sent = upstream_headers(headers, call.endpoint)
        if call.span is not None:
            sent["traceparent"] = call.span.traceparent()  # the provider's side hangs under the proxy's span
        async with ctx.http.request(
            scope["method"], URL(url, encoded=True), headers=sent,
            data=payload or None, allow_redirects=False,
        ) as upstream:
            call.status = upstream.status
            if call.wire.streams(call.info, content_type=upstream.content_type, status=upstream.status):
                await relay_stream(call=call, upstream=upstream, receive=receive, send=send, started=before_upstream)
            else:
                await relay_body(call=call, upstream=upstream, send=send, started=before_upstream)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        if call.status:
            cut_short(call)
        metrics.errors_total.labels(call.provider_label, "upstream_timeout").inc()
        raise ProxyError(
            504, "timeout_error", "The provider did not answer in time.", code="upstream_timeout"
        ) from None
    except aiohttp.ClientError as exc:
        if call.status:
            cut_short(call)
        if isinstance(os_error := getattr(exc, "os_error", None), BlockedAddress):
            raise _address_blocked(call, str(os_error)) from None
        metrics.errors_total.labels(call.provider_label, "upstream_unreachable").inc()
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
    metrics.errors_total.labels(call.provider_label, "upstream_address_blocked").inc()
    return ProxyError(502, "api_error", f"The provider's address is refused: {problem}",
                      code="upstream_address_blocked")


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
            await ctx.quota.settle_or_defer(reservation=reservation, actual_nanos=0, actual_tokens=0, event=b"")
        return
    if call.saving_baseline is not None and call.usage is not None and call.cost_usd is not None:
        routing_saving(call)
    event = usage_event(call)
    if reservation is None:
        assert call.account is not None
        await ctx.quota.record(account_id=call.account.id, event=event)
    else:
        usage = call.usage or TokenUsage()
        await ctx.quota.settle_or_defer(reservation=reservation, actual_nanos=usd_to_nanos(call.cost_usd or Decimal(0)),
                                        actual_tokens=usage.input_tokens + usage.output_tokens, event=event)
    call_observe(call)  # after the record has left: a metric must never cost one


async def emit_unreserved(*, call: Call, ctx: ProxyContext) -> None:
    """Record a call that reserved nothing: a denial, a bad request, an unreachable upstream."""
    if call.account is None:
        call_log(call)  # no account to attribute an unauthenticated call to: no record, one log line
        return
    if call.reservation is not None:
        # The upstream failed after admission: give the reservation back, record zero cost.
        await settle(call=call, ctx=ctx)
        return
    await ctx.quota.record(account_id=call.account.id, event=usage_event(call))
    call_observe(call)


async def send_error(*, call: Call, send: Send, error: ProxyError) -> None:
    body = call.wire.error_body(status=error.status, error_type=error.error_type, message=error.message,
                                code=error.code)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-tokonomics-request-id", call.rid.encode()),
        (b"x-tokonomics-cost-usd", cost_header(Decimal(0))),  # the proxy's own answers cost nothing
        *error.headers,
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

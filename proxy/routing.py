"""Routes: which targets may serve a call that names one, in which order, what it reserves, and the retry
policy (backoff, Retry-After). The attempts themselves are proxy/route_forward.py's.

A route call's URL names a provider endpoint as any call's does: that endpoint's wire format is the
client's format (the format of the request, the answer and the errors). The route's targets may be any
endpoint of the account; a target in another format is served through a FormatAdapter, and skipped (the
record says `untranslatable`) where there is none (`adapter_for`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import orjson

from proxy.pricing import cost_or_none

from .admission import estimate, prices_of
from .directory import EndpointEntry, RouteEntry, RouteTarget
from .quota import CallPlan, Counter
from .usage_bounds import TEXT_LIMITS, text_clean

if TYPE_CHECKING:
    from .gateway import Call
    from .target_health import TargetHealth

# What a retry or a fallback answers: the provider is rate limiting, overloaded or failing, not refusing
# the request itself (a 400 or 401 would fail at every target alike, and is passed on at once).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
MAX_BACKOFF_SECONDS = 30.0
# A downgrade to a plain model is one attempt at the call's endpoint, bounded like any upstream call.
MAX_DOWNGRADE_DEADLINE_SECONDS = 600.0
# The wire formats whose model is in the body, so a target's model is set by rewriting `model`.
BODY_MODEL_FORMATS = frozenset({"openai", "anthropic"})


@dataclass(frozen=True, slots=True)
class FormatAdapter:
    """How a call in the client's wire format reaches a target's. Within one format nothing changes
    (`translates` is False); cross-format translation (proxy/translate/) supplies adapters that do."""

    client_format: str
    target_format: str

    @property
    def translates(self) -> bool:
        return self.client_format != self.target_format


SAME_FORMAT = {name: FormatAdapter(name, name) for name in BODY_MODEL_FORMATS}  # made once: one per call costs


def adapter_for(client_format: str, target_format: str, operation: str) -> FormatAdapter | None:
    """The adapter for a target in `target_format` serving a call in `client_format`, or None when the call
    cannot be served there faithfully (the route then skips the target). The seam cross-format translation
    replaces: until then only the same format is served, and only where the model is in the body."""
    if client_format != target_format or client_format not in BODY_MODEL_FORMATS:
        return None
    return SAME_FORMAT[client_format]


def route_resolve(call: Call) -> None:
    """Mark a call whose model names one of the account's routes as routed (after `describe`)."""
    assert call.account is not None and call.info is not None
    routes = call.account.routes
    if routes and (route := routes.get(call.info.model)) is not None and route.targets:
        call.route = route
        call.requested_model = call.info.model
        if route.strategy == "lowest-cost":
            call.saving_baseline = saving_baseline(call, route)


def saving_baseline(call: Call, route: RouteEntry) -> tuple[EndpointEntry, str] | None:
    """What a routing saving is measured against: the model the client named, where the URL's endpoint prices
    it (a route named after a real model), else the route's first target (its primary)."""
    assert call.endpoint is not None and call.account is not None
    if prices_of(call, call.requested_model, call.endpoint) is not None:
        return call.endpoint, call.requested_model
    first = route.targets[0]
    endpoint = call.account.endpoints.get(first.endpoint)
    return (endpoint, first.model) if endpoint is not None else None


def routing_saving(call: Call) -> None:
    """routing_saved_usd: what the same usage would have cost at the baseline, less what it cost (never < 0)."""
    assert call.saving_baseline is not None and call.usage is not None and call.cost_usd is not None
    endpoint, model = call.saving_baseline
    baseline = cost_or_none(prices_of(call, model, endpoint), call.usage)
    if baseline is not None:
        call.routing_saved_usd = max(Decimal(0), baseline - call.cost_usd)


def route_estimate(call: Call) -> tuple[int, int]:
    """What a routed call reserves: the dearest estimate of any target it may be served by, so whichever
    serves it, the settlement is covered. Each target's estimate is kept for `lowest-cost`."""
    assert call.route is not None and call.account is not None
    dearest_nanos, tokens = 0, 0
    estimates: dict[str, int] = {}
    for target in call.route.targets:
        endpoint = call.account.endpoints.get(target.endpoint)
        if endpoint is None:
            continue
        nanos, target_tokens = estimate(call, endpoint=endpoint, model=target.model)
        estimates[target.label] = nanos
        dearest_nanos, tokens = max(dearest_nanos, nanos), max(tokens, target_tokens)
    call.route_estimates = estimates
    return dearest_nanos, tokens


def downgrade_estimates(call: Call, plan: CallPlan) -> list[int] | None:
    """What the call would reserve at each downgrade target of its budgets (quota.reserve's argument); None
    (no downgrade) for a wire format whose model is not in the body (Azure deployments, Gemini's paths)."""
    if call.wire.name not in BODY_MODEL_FORMATS:
        return None
    return [downgrade_estimate(call, plan.counters[i].downgrade_to) for i in plan.downgrades]


def downgrade_estimate(call: Call, target: str) -> int:
    """What the call reserves when a budget downgrades it to `target`: a route's dearest target, or the model
    at the call's endpoint."""
    assert call.account is not None
    route = call.account.routes.get(target)
    if route is None:
        return estimate(call, model=target)[0]
    endpoints = call.account.endpoints
    return max((estimate(call, endpoint=endpoints[t.endpoint], model=t.model)[0]
                for t in route.targets if t.endpoint in endpoints), default=0)


def downgrade_apply(call: Call, counter: Counter) -> None:
    """A budget past its downgrade threshold admitted the call for its downgrade target: serve it there, say so
    (X-Tokonomics-Downgraded-From), and measure the saving against what was asked for."""
    assert call.account is not None and call.info is not None and call.endpoint is not None
    asked = call.requested_model or call.info.model
    if call.saving_baseline is None:
        call.saving_baseline = (saving_baseline(call, call.route) if call.route is not None
                                else (call.endpoint, call.info.model))
    call.requested_model = call.downgraded_from = asked
    call.downgrade_budget_id = counter.budget_id
    call.response_headers_extra.append(
        (b"x-tokonomics-downgraded-from", text_clean(asked, TEXT_LIMITS["model"]).encode("ascii", "backslashreplace"))
    )
    route = call.account.routes.get(counter.downgrade_to)
    call.route = route if route is not None and route.targets else RouteEntry(
        "", "fallback", (RouteTarget(call.endpoint.slug, counter.downgrade_to),), max_attempts=1, retries=0,
        deadline_seconds=MAX_DOWNGRADE_DEADLINE_SECONDS,
    )


def target_order(call: Call, health: TargetHealth) -> list[RouteTarget]:
    """The route's targets in the order its strategy tries them; those whose breaker is open go last (tried
    only when every other one failed)."""
    route = call.route
    assert route is not None and call.account is not None
    targets = list(route.targets)
    if route.strategy == "weighted" and len(targets) > 1:
        # A weighted shuffle (Efraimidis–Spirakis): the first is drawn by weight, the rest follow as fallbacks.
        targets.sort(key=lambda t: -(random.random() ** (1.0 / t.weight)) if t.weight > 0 else 1.0)  # noqa: S311
    elif route.strategy == "lowest-cost" and len(targets) > 1:
        estimates = call.route_estimates
        targets.sort(key=lambda t: estimates.get(t.label, 0))
    elif route.strategy == "lowest-latency" and len(targets) > 1:
        account_id = call.account.id
        targets.sort(key=lambda t: health.latency_p50((account_id, t.endpoint, t.model)))
    if len(targets) > 1:
        account_id = call.account.id
        targets.sort(key=lambda t: health.is_open((account_id, t.endpoint, t.model)))  # stable: order kept
    return targets


def backoff_seconds(route: RouteEntry, retry: int) -> float:
    """Exponential backoff with full jitter: anywhere from 0 to base × 2^retry (capped)."""
    return random.uniform(0, min(MAX_BACKOFF_SECONDS, route.backoff_seconds * (2 ** retry)))  # noqa: S311


def retry_after_seconds(retry_after: str | None, retry_after_ms: str | None = None) -> float | None:
    """What the provider asked to wait: `retry-after-ms` (OpenAI), else `Retry-After` in seconds or as an HTTP
    date; None when it says nothing readable."""
    if retry_after_ms:
        try:
            return max(0.0, float(retry_after_ms) / 1000)
        except ValueError:
            pass
    if not retry_after:
        return None
    value = retry_after.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def body_for_model(body: bytes, model: str) -> bytes:
    """The request body with `model` set to the target's (the client named the route)."""
    payload = orjson.loads(body)
    payload["model"] = model
    return orjson.dumps(payload)

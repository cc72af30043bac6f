"""Whether a call may go ahead, and what it may cost: the estimate reserved before it, the price
settled after it (both read the same prices at the same instant, so the settlement of the same
counts never costs more than was reserved), and the refusals a verdict turns into."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from proxy.pricing import PriceTable, cost_or_none, dearest_cost_usd, default_max_output_tokens, price_table
from proxy.usage import TokenUsage

from . import metrics
from .budgets import usd_to_nanos
from .errors import ProxyError
from .providers.base import Operation
from .quota import MAX_CALL_NANOS, MAX_CALL_TOKENS, Counter, Denial, Reservation

if TYPE_CHECKING:
    from .directory import EndpointEntry
    from .gateway import Call

RATE_LIMITS = {"rate_requests": "requests per minute", "rate_tokens": "tokens per minute",
               "rate_concurrency": "concurrent requests"}


def prices_of(call: Call, model: str, endpoint: EndpointEntry | None = None) -> PriceTable | None:
    """The model's prices at `endpoint` (default: the call's), at the call's instant."""
    endpoint = endpoint or call.endpoint
    assert endpoint is not None and call.account is not None
    return price_table(
        provider_id=endpoint.pricing_provider or None,
        base_url=endpoint.base_url,
        model=model,
        at=call.started_at,
        override=call.account.prices.get((endpoint.slug, model)),
    )


def price(call: Call, usage: TokenUsage, model: str) -> Decimal | None:
    """The settlement's pricing; the estimate reads the same prices at the same instant (`prices_of`)."""
    return cost_or_none(prices_of(call, model), usage)


def estimate(call: Call, *, endpoint: EndpointEntry | None = None, model: str | None = None) -> tuple[int, int]:
    """(estimated cost in nano-dollars, estimated tokens) reserved before the call, were it served by `model`
    at `endpoint` (default: the call's own).

    The counts are priced the dearest way the provider may bill them (input read from or written to a
    cache, output as reasoning), so the settlement of the same counts never costs more.
    """
    info = call.info
    if info is None:
        return 0, 0
    endpoint = endpoint or call.endpoint
    model = model or info.model
    assert endpoint is not None
    output = info.max_output_tokens
    if output is None:
        output = 0 if info.operation is Operation.EMBEDDINGS else default_max_output_tokens(
            endpoint.pricing_provider or None, model
        ) * info.choices
    # n = 10^9 or max_tokens = 10^18 is the provider's to refuse; here it must only make a large estimate,
    # not one past what Decimal's 28 digits can price (quota caps what reaches Redis).
    output = min(output, MAX_CALL_TOKENS)
    tokens = info.estimated_input_tokens
    table = prices_of(call, model, endpoint)
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


def unpriced_refuse(*, call: Call, counters: list[Counter]) -> None:
    """A hard budget cannot cap a model without a price: it would reserve and settle nothing (CONTRACT §1)."""
    assert call.account is not None
    if call.info is None or call.account.allow_unpriced_models or not any(c.hard for c in counters):
        return
    if call.route is not None:
        endpoints = call.account.endpoints
        unpriced = [t.label for t in call.route.targets if t.endpoint in endpoints
                    and prices_of(call, t.model, endpoints[t.endpoint]) is None]
        if not unpriced:
            return
        call.usage, call.cost_usd = TokenUsage(), Decimal(0)
        raise ProxyError(
            403, "permission_error", f"Route {call.route.name!r} has targets without a price ({', '.join(unpriced)}), "
            "and a hard budget covers this call; an account admin can add prices or allow unpriced models.",
            code="model_unpriced",
        )
    if prices_of(call, call.info.model) is not None:
        return
    call.usage, call.cost_usd = TokenUsage(), Decimal(0)  # recorded as a denial: nothing used, nothing owed
    if call.deployment and not call.deployment_mapped:
        raise ProxyError(
            403, "permission_error", f"Deployment {call.deployment!r} is not mapped to a model, so this call has no "
            "price, and a hard budget covers it; an account admin can map the deployment to its model on the "
            "endpoint, or allow unpriced models.", code="model_unpriced",
        )
    raise ProxyError(
        403, "permission_error", f"Model {call.info.model!r} has no price, and a hard budget covers this call; an "
        "account admin can add a price for it or allow unpriced models.", code="model_unpriced",
    )


def unenforced_admit(*, call: Call, counters: list[Counter]) -> None:
    """Redis gave no verdict: the account's policy for an unavailable Redis decides."""
    assert call.account is not None and call.key is not None
    policy = call.account.on_redis_unavailable
    if policy == "closed" or (policy == "default" and any(c.hard for c in counters)):
        raise ProxyError(
            503, "service_unavailable", "Budget enforcement is unavailable right now; please retry shortly.",
            code="enforcement_unavailable",
        )
    call.enforced = False
    metrics.unenforced_total.labels(call.provider_label).inc()
    if counters:
        # Nothing is reserved, but the cost still reaches the counters once Redis answers.
        call.reservation = Reservation(call.rid, call.account.id, call.key.id, counters, 0, 0, held=False)


def denial_error(denial: Denial) -> ProxyError:
    headers = [(b"x-tokonomics-denied-scope", denial.scope.encode())]
    if denial.retry_after_ms >= 0:  # a `total` budget never resets: no Retry-After
        seconds = max(1, -(-denial.retry_after_ms // 1000))
        headers.append((b"retry-after", str(seconds).encode()))
    metrics.budget_denials_total.labels(denial.scope).inc()
    if denial.scope == "plan":
        return ProxyError(429, "plan_limit_exceeded", "The plan's monthly request limit is reached.",
                          code="plan_request_limit", denied_scope="plan", headers=headers)
    if denial.scope.startswith("rate_"):
        return ProxyError(429, "rate_limit_exceeded", f"This key's limit of {RATE_LIMITS[denial.scope]} is reached.",
                          code=denial.scope, denied_scope=denial.scope, headers=headers)
    scope_name = denial.scope.removesuffix("_budget")
    return ProxyError(429, "budget_exceeded", f"The {scope_name} budget would be exceeded by this call.",
                      code=denial.scope, denied_scope=denial.scope, headers=headers)

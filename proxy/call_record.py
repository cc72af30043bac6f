"""What a finished call leaves behind: its usage record, as the event the ledger stores, and its
metrics."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING

import orjson

from proxy.budgets import nanos_to_usd
from proxy.pricing import catalogue_model_id
from proxy.usage import TokenUsage

from . import metrics
from .guardrail_step import hits_for_record
from .usage_bounds import MAX_LATENCY_MS, MAX_TOKENS, TEXT_LIMITS, cost_clean, int_clamp, text_clean

if TYPE_CHECKING:
    from .gateway import Call

log = logging.getLogger(__name__)
# One line per call, enabled by LOG_FORMAT=json (settings.LOGGING); otherwise a call pays one level check.
access_log = logging.getLogger("proxy.access")


def usage_event(call: Call) -> bytes:
    """The call's usage record as it leaves for the ledger. Attribution was cleaned as the call was read
    (`handle`); what else a client or an upstream decided (the slug, the model names, the counts, the cost)
    is bounded here, so the record always fits its columns (proxy/usage_bounds.py)."""
    usage = call.usage or TokenUsage()
    assert call.account is not None
    event: dict[str, object] = {
        "request_id": call.rid,
        "account_id": call.account.id,
        "key_id": call.key.id if call.key else None,
        "feature": call.feature,
        "tenant": call.tenant,
        "session": call.session,
        "session_name": call.session_name,
        "session_git": call.session_git,
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
        "provider_cost_usd": None if usage.provider_cost_usd is None else cost_clean(str(usage.provider_cost_usd)),
        "latency_ms": int_clamp(int((time.perf_counter() - call.started) * 1000), MAX_LATENCY_MS),
        "status_code": call.status,
        "denied_scope": call.denied_scope,
        # a budget denial says what it asked to reserve (plain text: cost_clean's fast path)
        "reserved_usd": cost_clean(format(nanos_to_usd(call.estimate_nanos), "f"))
        if call.denied_scope.endswith("_budget") else None,
        "streamed": call.streamed,
        "cache_hit": call.cache_hit,
        "cache_saved_usd": None if call.cache_saved_usd is None else cost_clean(str(call.cache_saved_usd)),
        "usage_source": call.usage_source,
        "enforced": call.enforced,
        "created_at": call.created_at,
    }
    if call.cache_hit:  # answered from the response cache (proxy/cache_steps.py): free, and what it saved
        event["cache_hit"] = True
        event["cache_saved_usd"] = None if call.cache_saved_usd is None else cost_clean(str(call.cache_saved_usd))
    if call.requested_model:  # routed or downgraded: which route, what was asked, every attempt, the saving
        event["route"] = text_clean(call.route.name, TEXT_LIMITS["route"]) if call.route is not None else ""
        event["requested_model"] = text_clean(call.requested_model, TEXT_LIMITS["requested_model"])
        event["downgraded_from"] = text_clean(call.downgraded_from, TEXT_LIMITS["downgraded_from"])
        # The proxy's own entries (a configured target's label, an outcome of ours, a count), at most
        # MAX_RECORDED_ATTEMPTS of them: bounded where they are made; the ledger cleans them again.
        event["attempts"] = call.attempts
        if call.downgrade_budget_id:
            event["downgrade_budget_id"] = call.downgrade_budget_id  # for budget.downgraded; not a record field
        event["routing_saved_usd"] = (None if call.routing_saved_usd is None
                                      else cost_clean(format(call.routing_saved_usd, "f")))
    if call.guardrails is not None and call.guardrails.hits:
        event["guardrail_hits"] = hits_for_record(call.guardrails)  # rule ids and counts, never the text
    return orjson.dumps(event)


# Two costs of one call agree within this fraction of the larger (providers round), or within a micro-dollar.
PROVIDER_COST_TOLERANCE = Decimal("0.02")
PROVIDER_COST_SLACK_USD = Decimal("0.000001")


def provider_cost_check(call: Call) -> None:
    """Compare the cost the provider reported (OpenRouter, Perplexity) with ours: it is recorded, never charged,
    and a disagreement (a unit, a price or a count wrong on one side) is counted and logged."""
    theirs = call.usage.provider_cost_usd if call.usage is not None else None
    if theirs is None:
        return
    ours = call.cost_usd
    if ours is not None and abs(ours - theirs) <= max(ours, theirs) * PROVIDER_COST_TOLERANCE + PROVIDER_COST_SLACK_USD:
        return
    metrics.provider_cost_mismatch_total.labels(call.provider_label).inc()
    log.warning("call %s: %s reports a cost of $%s, Tokonomics priced it at $%s", call.rid, call.provider_label,
                theirs, "unknown" if ours is None else ours)


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


def call_observe(call: Call) -> None:
    """Count the call in the metrics and log it; after its record has left, since neither may cost one."""
    try:
        _observe_series(call)
    except (ValueError, OverflowError):
        log.exception("could not count call %s in the metrics", call.rid)
    call_log(call)


def call_log(call: Call) -> None:
    """The access line: who, what status, how long, how much. Never content, never the key itself."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    usage = call.usage
    access_log.info("%s %s %s", call.provider_label, call.operation or "-", call.status, extra={
        "request_id": call.rid,
        "account": call.account.id if call.account is not None else None,
        "key_id": call.key.id if call.key is not None else None,
        "status": call.status,
        "latency_ms": round((time.perf_counter() - call.started) * 1000, 1),
        "cost_usd": str(call.cost_usd) if call.cost_usd is not None else None,
        "provider": call.provider_label,
        "model": call.info.model if call.info is not None else None,  # cut by the formatter
        "feature": call.feature, "environment": call.environment,
        "denied_scope": call.denied_scope,
        "streamed": call.streamed,
        "cache_hit": call.cache_hit,
        "input_tokens": usage.input_tokens if usage is not None else None,
        "output_tokens": usage.output_tokens if usage is not None else None,
    })


def _observe_series(call: Call) -> None:
    series = metrics.call_series(call.provider_label, metric_model(call), call.feature, call.environment,
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
        if call.account is not None:
            metrics.add(metrics.account_cost_series(call.account.slug), float(call.cost_usd))
    metrics.observe(series.overhead, call.overhead_seconds)
    if call.guardrails is not None:
        for (rule, action), count in call.guardrails.hits.items():
            metrics.add(metrics.guardrail_hits_total.labels(rule, action), count)
    if call.upstream_seconds:
        metrics.observe(series.upstream, call.upstream_seconds)

"""Every field of a usage event bounded and cleaned, so that its record always fits its columns.

A provider slug comes from the URL, a model from the body, attribution from headers and token
counts from the upstream: any of them may be long, hold control characters or be absurd. PostgreSQL
refuses NUL in text and `\\u0000` in jsonb, and a value over a column's length fails the whole
batch it is written in — so the proxy cleans the event where it is made, and the ledger cleans
again whatever reaches it (an older proxy's event). Pure: no Django, no I/O.

The lengths are the usage record's columns and its label set's (billing.models.UsageRecord, UsageLabelSet; README
"Stored usage fields").
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

TEXT_LIMITS = {
    "request_id": 40,
    "feature": 200,
    "tenant": 200,
    "session": 100,
    "session_name": 200,
    "session_git": 300,
    "environment": 60,
    "provider": 63,
    "model": 200,
    "served_model": 200,
    "operation": 20,
    "denied_scope": 40,
    "usage_source": 10,
    "route": 200,
    "requested_model": 200,
    "downgraded_from": 200,
}
MAX_TAGS = 10
MAX_ATTEMPTS = 20  # a routed call's attempts listed on its record
ATTEMPT_OUTCOME_LIMIT = 20
TAG_NAME_LIMIT = 60
TAG_VALUE_LIMIT = 200
# A record's token counts are 4-byte columns (docs/scaling.md "Bytes per record"): two billion tokens in one call
# is a thousand times any model's context, and the rollups' bigint sums cannot overflow.
MAX_TOKENS = 2**31 - 1
# What a call may be estimated to take before it runs (an absurd `n` or max_tokens): far past any record, so that
# such an estimate is past what any hard budget leaves (proxy/quota.py) and the call is denied, not admitted.
MAX_ESTIMATE_TOKENS = 10**12
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
MAX_LATENCY_MS = 2**31 - 1  # PositiveIntegerField
MAX_STATUS_CODE = 999
MAX_COST_USD = Decimal("999999999.999999999")  # DecimalField(max_digits=18, decimal_places=9)

# C0 controls, DEL, and lone surrogates (which no encoder accepts). Not C1 (\x80-\x9f): headers are read
# as latin-1, where those are the continuation bytes of UTF-8 text, so removing them would make different
# tenants one (丁 and 七 differ only in such a byte); PostgreSQL stores them: NUL is what it refuses.
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def text_clean(value: Any, limit: int) -> str:
    """`value` as a string of at most `limit` characters without control characters."""
    if value.__class__ is str and len(value) <= limit and value.isprintable():
        return value  # the usual case, about ten times cheaper than the substitution
    if not isinstance(value, str):
        value = "" if value is None else str(value)
    # Cut first, so a 32 MiB model name costs no more than a short one.
    return _CONTROL.sub("", value[: limit * 2])[:limit]


def int_clamp(value: Any, high: int) -> int:
    """`value` as an int within [0, high]; anything that is not a number is 0."""
    if value.__class__ is int and 0 <= value <= high:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value)
        except (TypeError, ValueError, OverflowError):
            return 0
    number: int = value
    return min(max(number, 0), high)


def tags_clean(tags: Any) -> dict[str, str]:
    if not isinstance(tags, dict):
        return {}
    if not tags:
        return tags
    clean: dict[str, str] = {}
    for name, value in list(tags.items())[:MAX_TAGS]:
        name = text_clean(name, TAG_NAME_LIMIT).strip()
        if name:
            clean[name] = text_clean(value, TAG_VALUE_LIMIT)
    return clean


def attempts_clean(attempts: Any) -> list[dict[str, Any]]:
    """A routed call's attempts: at most MAX_ATTEMPTS of {target, outcome, ms}, each field bounded."""
    if not isinstance(attempts, list):
        return []
    return [
        {"target": text_clean(a.get("target"), TEXT_LIMITS["provider"] + 1 + TEXT_LIMITS["model"]),
         "outcome": text_clean(a.get("outcome"), ATTEMPT_OUTCOME_LIMIT),
         "ms": int_clamp(a.get("ms"), MAX_LATENCY_MS)}
        for a in attempts[:MAX_ATTEMPTS] if isinstance(a, dict)
    ]


def cost_clean(value: Any) -> str | None:
    if value is None:
        return None
    if value.__class__ is str and value.isascii():
        whole, _, fraction = value.partition(".")
        if whole.isdigit() and len(whole) <= 9 and (not fraction or (fraction.isdigit() and len(fraction) <= 9)):
            return value  # plain digits under a billion dollars, as the proxy writes them
    try:
        cost = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None  # unknown, as for a model without a price
    if not cost.is_finite():
        return None
    return str(min(max(cost, Decimal(0)), MAX_COST_USD))


MAX_GUARDRAIL_HITS = 60  # a policy has at most 50 rules, the built-in PII types and injection besides
GUARDRAIL_ACTIONS = frozenset({"block", "mask", "warn", "log"})
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")


def guardrail_hits_clean(hits: Any) -> list[dict[str, Any]]:
    """The record's guardrail hits: rule slugs, known actions and counts, bounded; anything else dropped."""
    if not isinstance(hits, list):
        return []
    clean = []
    for hit in hits[:MAX_GUARDRAIL_HITS]:
        if not isinstance(hit, dict):
            continue
        rule, action = hit.get("rule"), hit.get("action")
        if isinstance(rule, str) and _RULE_ID.fullmatch(rule) and action in GUARDRAIL_ACTIONS:
            clean.append({"rule": rule, "action": action, "count": int_clamp(hit.get("count"), MAX_TOKENS)})
    return clean


def usage_event_clean(*, event: dict[str, Any]) -> dict[str, Any]:
    """The event with each stored field cut to its documented length or clamped to its column's range;
    fields it does not know are left as they are (the ledger reads only the record's fields).

    The ledger's pass over every event it reads (an older proxy's too); the proxy bounds the same fields with
    the same helpers where it makes the event (proxy.call_record.usage_event), field by field, which is cheaper
    on the hot path than a second pass over the whole dict."""
    clean = dict(event)
    for name, limit in TEXT_LIMITS.items():
        value = clean.get(name, "")
        if not (value.__class__ is str and len(value) <= limit and value.isprintable()):
            clean[name] = text_clean(value, limit)
    for name in TOKEN_FIELDS:
        value = clean.get(name, 0)
        if not (value.__class__ is int and 0 <= value <= MAX_TOKENS):
            clean[name] = int_clamp(value, MAX_TOKENS)
    if "tags" in clean and clean["tags"]:
        clean["tags"] = tags_clean(clean["tags"])
    if "latency_ms" in clean:
        clean["latency_ms"] = int_clamp(clean["latency_ms"], MAX_LATENCY_MS)
    if "cache_hit" in clean:
        clean["cache_hit"] = clean["cache_hit"] is True
    if "status_code" in clean:
        clean["status_code"] = int_clamp(clean["status_code"], MAX_STATUS_CODE)
    if "attempts" in clean:
        clean["attempts"] = attempts_clean(clean["attempts"])
    for name in ("cost_usd", "reserved_usd", "provider_cost_usd", "routing_saved_usd", "cache_saved_usd"):
        if name in clean:
            clean[name] = cost_clean(clean[name])
    if "guardrail_hits" in clean:
        clean["guardrail_hits"] = guardrail_hits_clean(clean["guardrail_hits"])
    return clean

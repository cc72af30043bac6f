""""Try this text": a policy run over a sample text, for the web page and the REST API. Evaluated in the
request that asks and returned to it only: neither the text nor the result is stored or logged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .guardrails.policy import GuardrailBlocked, compile_policy

MAX_TRY_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class TryResult:
    result: str  # the text as the provider (input) or the client (output) would get it; "" when blocked
    blocked_by: str | None  # the rule id that refused it
    hits: list[dict[str, Any]] = field(default_factory=list)  # rule, action, count: what matched, never the text
    warned: list[str] = field(default_factory=list)


def guardrail_try(*, spec: Mapping[str, Any], text: str, scope: str = "input") -> TryResult:
    """Run a valid spec over `text` as a request's user message ("input") or an answer ("output"). The
    injection heuristic scores input only, as on a call. A server-side system prompt is not shown here."""
    session = compile_policy(spec).new_session()
    blocked_by = None
    result = ""
    try:
        if scope == "output":
            result = session.filter_output_text(text[:MAX_TRY_CHARS])
        else:
            session.check_injection(text[:MAX_TRY_CHARS])
            result = session.scan_input(text[:MAX_TRY_CHARS])
    except GuardrailBlocked as exc:
        blocked_by = exc.rule_id
    hits = [{"rule": rule, "action": action, "count": count} for (rule, action), count in sorted(session.hits.items())]
    return TryResult(result=result, blocked_by=blocked_by, hits=hits, warned=list(dict.fromkeys(session.warned)))

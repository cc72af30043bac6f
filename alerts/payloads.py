"""Alert bodies (CONTRACT §6): `{"type", "timestamp", "data", "version"}`, decimals as strings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

PAYLOAD_VERSION = 1


def alert_payload(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": event_type,
        "version": PAYLOAD_VERSION,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {k: _plain(v) for k, v in data.items()},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Fixed-point always: str() gives "1E-7" for tiny amounts and normalize() "5E+2" for round ones.
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def budget_data(budget: Any) -> dict[str, Any]:
    return {
        "id": budget.pk,
        "scope": budget.scope,
        "match": budget.match,
        "period": budget.period,
        "limit_usd": budget.limit_usd,
        "hard": budget.hard,
    }


def alert_summary(payload: dict[str, Any]) -> str:
    """One line a person can act on, for email subjects and chat messages."""
    data = payload.get("data", {})
    budget = data.get("budget") or {}
    target = budget.get("scope", "")
    if data.get("value"):
        target += f" {data['value']}"
    elif budget.get("match"):
        target += f" {budget['match']}"
    account = data.get("account", "")
    kind = payload.get("type")
    if kind == "budget.threshold_crossed":
        return (f"{account}: {target} budget at {data.get('threshold_percent')}% "
                f"(${data.get('spent_usd')} of ${budget.get('limit_usd')} this {budget.get('period')})")
    if kind == "budget.exhausted":
        return f"{account}: {target} budget exhausted (${data.get('spent_usd')} of ${budget.get('limit_usd')})"
    if kind == "budget.resolved":
        spent, limit = data.get("spent_usd"), budget.get("limit_usd")
        return f"{account}: {target} budget back under its limit (${spent} of ${limit})"
    if kind == "budget.forecast":
        return f"{account}: at this rate the {target} budget is reached in {data.get('hours_to_limit')} hours"
    if kind == "spend.burn_rate":
        return (f"{account}: runaway spend on {data.get('scope')} {data.get('value')}: ${data.get('window_spend_usd')} "
                f"in {data.get('window_minutes')} min, {data.get('ratio')}× its usual rate")
    if kind == "plan.request_limit":
        return f"{account}: {data.get('threshold_percent')}% of the plan's monthly requests used"
    key = data.get("key") or {}
    if kind in ("key.created", "key.revoked", "key.rotated"):
        return f"{account}: key {key.get('name')} ({key.get('prefix')}…) {kind.removeprefix('key.')}"
    if kind == "key.expiring":
        return f"{account}: key {key.get('name')} expires in {data.get('days_left')} days ({key.get('expires_at')})"
    if kind == "rate_limit.exceeded":
        return f"{account}: key {key.get('name')} hit its {data.get('limit')} limit"
    if kind == "budget.denied":
        return (f"{account}: {target} budget denied a call "
                f"(limit ${budget.get('limit_usd')} this {budget.get('period')})")
    if kind == "budget.downgraded":
        return (f"{account}: {target} budget passed {budget.get('downgrade_at')}%: calls for "
                f"{data.get('downgraded_from')} are now served by {data.get('downgrade_to')}")
    if kind == "plan.limit_approaching":
        return (f"{account}: {data.get('threshold_percent')}% of the plan's monthly requests used "
                f"({data.get('requests')} of {data.get('monthly_request_limit')})")
    if kind == "test":
        return f"{account}: test alert from Tokonomics"
    return f"{account}: {kind}"

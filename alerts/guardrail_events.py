"""`guardrail.violation` webhook events (CONTRACT §6), from the guardrail hits on usage records the ledger has just
stored: the proxy counts hits by rule id and action on the call's usage event (never the matched text) and
touches no SQL; the worker that ingests them fires the event. At most one per key per minute (a Redis marker
set with NX is the claim; the unique dedupe key stands behind it), naming the call that opened the window and
the rules it matched."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alerts.events import alert_event_create, alert_subscribed
from alerts.models import AlertEvent
from billing.models import Account
from proxy.budgets import account_prefix
from proxy.models import ApiKey
from tokonomics.redis_client import sync_redis

VIOLATION_WINDOW_SECONDS = 60


def _claim(account_id: int, key_id: int | None) -> bool:
    name = f"{account_prefix(account_id)}:alerted:guardrail:{key_id or 0}"
    return bool(sync_redis().set(name, 1, nx=True, ex=VIOLATION_WINDOW_SECONDS))


def guardrail_events_fire(*, events: list[dict]) -> list[AlertEvent]:
    """Fire what the guardrail hits among just-ingested usage events call for."""
    hits = [e for e in events if e.get("guardrail_hits")]
    fired: list[AlertEvent] = []
    by_account: dict[int, list[dict]] = {}
    for event in hits:
        by_account.setdefault(event["account_id"], []).append(event)
    for account_id, batch in by_account.items():
        if not alert_subscribed(account_id=account_id, event_type=AlertEvent.Type.GUARDRAIL_VIOLATION):
            continue
        account = Account.objects.filter(pk=account_id).first()
        if account is None:
            continue
        for event in sorted(batch, key=lambda e: e["created_at"]):
            if (created := _violation_fire(account, event)) is not None:
                fired.append(created)
    return fired


def _violation_fire(account: Account, event: dict) -> AlertEvent | None:
    key_id = event.get("key_id")
    if not _claim(account.pk, key_id):
        return None
    key = ApiKey.objects.filter(pk=key_id, account=account).first() if key_id else None
    at = datetime.fromtimestamp(event["created_at"], UTC)
    rules = [{"rule": h["rule"], "action": h["action"], "count": h["count"]} for h in event["guardrail_hits"]]
    data: dict[str, Any] = {
        "account": account.slug,
        "key": {"id": key.pk, "name": key.name, "prefix": key.prefix} if key is not None else None,
        "request_id": event["request_id"],
        "rules": rules,
        "blocked": any(h["action"] == "block" for h in rules),
        "status_code": event.get("status_code"),
        "at": at,
        "window_seconds": VIOLATION_WINDOW_SECONDS,
    }
    return alert_event_create(account_id=account.pk, event_type=AlertEvent.Type.GUARDRAIL_VIOLATION,
                              dedupe_key=f"guardrail:{event['request_id']}", data=data)

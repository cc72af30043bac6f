"""`key.*` webhook events (CONTRACT §6): a key created, revoked or rotated (sent by proxy/services.py inside
the change's transaction, so a change rolled back sends nothing), and a key about to expire (a beat task).
Each goes only to channels subscribed to its type; none is stored when no channel is."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.events import alert_event_create, alert_subscribed
from alerts.models import AlertEvent
from proxy.models import ApiKey

EXPIRY_NOTICE = timedelta(days=7)
CHANGE_TYPES = {
    "created": AlertEvent.Type.KEY_CREATED,
    "revoked": AlertEvent.Type.KEY_REVOKED,
    "rotated": AlertEvent.Type.KEY_ROTATED,
}


def key_data(key: ApiKey) -> dict[str, Any]:
    """What an event says of a key: never its secret, only the visible prefix the app shows."""
    return {"id": key.pk, "name": key.name, "prefix": key.prefix, "environment": key.environment,
            "expires_at": key.expires_at}


def key_change_event_create(*, key: ApiKey, change: str) -> AlertEvent | None:
    event_type = CHANGE_TYPES[change]
    if not alert_subscribed(account_id=key.account_id, event_type=event_type):
        return None
    data: dict[str, Any] = {"account": key.account.slug, "key": key_data(key)}
    if change == "revoked":
        data["revoked_at"] = key.revoked_at
    # Every rotation is news; creation and revocation happen once per key.
    once = os.urandom(6).hex() if change == "rotated" else ""
    if change == "rotated":
        data["old_secret_valid_until"] = key.previous_valid_until
    return alert_event_create(account_id=key.account_id, event_type=event_type,
                              dedupe_key=f"{event_type}:{key.pk}:{once}", data=data)


def keys_expiring_check(*, now: datetime | None = None) -> list[AlertEvent]:
    """`key.expiring` once per key and expiry date, from EXPIRY_NOTICE before it: the event's unique dedupe
    key is the claim, so every run of the schedule (and every worker) may look. A key whose expiry moves
    is announced again for its new date."""
    now = now or datetime.now(UTC)
    keys = (ApiKey.objects.filter(revoked_at__isnull=True, expires_at__gt=now, expires_at__lte=now + EXPIRY_NOTICE)
            .select_related("account").order_by("expires_at"))
    dedupe = {key.pk: f"key.expiring:{key.pk}:{int(key.expires_at.timestamp())}" for key in keys if key.expires_at}
    done = set(AlertEvent.objects.filter(dedupe_key__in=dedupe.values()).values_list("dedupe_key", flat=True))
    fired = []
    subscribed: dict[int, bool] = {}
    for key in keys:
        if dedupe[key.pk] in done:
            continue
        if key.account_id not in subscribed:
            subscribed[key.account_id] = alert_subscribed(account_id=key.account_id,
                                                          event_type=AlertEvent.Type.KEY_EXPIRING)
        if not subscribed[key.account_id]:
            continue
        assert key.expires_at is not None  # the query keeps keys with an expiry only
        data = {"account": key.account.slug, "key": key_data(key),
                "days_left": max(0, (key.expires_at - now).days)}
        event = alert_event_create(account_id=key.account_id, event_type=AlertEvent.Type.KEY_EXPIRING,
                                   dedupe_key=dedupe[key.pk], data=data)
        if event is not None:
            fired.append(event)
    return fired

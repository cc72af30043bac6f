"""Webhooks signed the Standard Webhooks way (CONTRACT §6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING

import httpx
import orjson

from tokonomics.outbound_http import outbound_client

from .base import TIMEOUT_SECONDS, DeliveryResult, Notifier

if TYPE_CHECKING:
    from alerts.models import AlertChannel, AlertEvent


def webhook_signature(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed by the secret's decoded bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookNotifier(Notifier):
    def send(self, *, channel: AlertChannel, event: AlertEvent) -> DeliveryResult:
        body = orjson.dumps(event.payload)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "Tokonomics-Webhooks/1",
            "webhook-id": event.webhook_id,
            "webhook-timestamp": str(timestamp),
        }
        secret = channel.get_secret()
        if secret:
            headers["webhook-signature"] = webhook_signature(
                secret=secret, webhook_id=event.webhook_id, timestamp=timestamp, body=body
            )
        try:
            with outbound_client(timeout=TIMEOUT_SECONDS) as client:
                response = client.post(channel.destination_url(), content=body, headers=headers)
        except httpx.HTTPError as exc:
            return DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status_code < 300:
            return DeliveryResult(True, response.status_code)
        return DeliveryResult(False, response.status_code, response.text[:200])

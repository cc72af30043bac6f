"""Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat…): `{"text": …}`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from alerts.payloads import alert_summary
from tokonomics.outbound_http import outbound_client

from .base import TIMEOUT_SECONDS, DeliveryResult, Notifier

if TYPE_CHECKING:
    from alerts.models import AlertChannel, AlertEvent


class SlackNotifier(Notifier):
    def send(self, *, channel: AlertChannel, event: AlertEvent) -> DeliveryResult:
        try:
            with outbound_client(timeout=TIMEOUT_SECONDS) as client:
                response = client.post(channel.url, json={"text": alert_summary(event.payload)})
        except httpx.HTTPError as exc:
            return DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        return DeliveryResult(200 <= response.status_code < 300, response.status_code,
                              "" if response.is_success else response.text[:200])

"""Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat…): `{"text": …}`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from alerts.payloads import alert_summary
from tokonomics.outbound_http import outbound_client

from .base import TIMEOUT_SECONDS, DeliveryResult, Notifier

if TYPE_CHECKING:
    from alerts.models import AlertChannel, AlertEvent


def mrkdwn_escape(text: str) -> str:
    """Slack's escaping of message text: a tenant or feature name (data from API clients) cannot become a
    link (`<https://…|click>`) or a mention (`<!channel>`, `<@U…>`). `@` gets a zero-width joiner too:
    Mattermost turns a bare `@channel` into a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "@\u2060")


class SlackNotifier(Notifier):
    def send(self, *, channel: AlertChannel, event: AlertEvent) -> DeliveryResult:
        try:
            with outbound_client(timeout=TIMEOUT_SECONDS) as client:
                text = mrkdwn_escape(alert_summary(event.payload))
                response = client.post(channel.destination_url(), json={"text": text})
        except httpx.HTTPError as exc:
            return DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        return DeliveryResult(200 <= response.status_code < 300, response.status_code,
                              "" if response.is_success else response.text[:200])

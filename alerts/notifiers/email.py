"""Email through Django's email backend (SMTP from the environment), plain text and HTML."""

from __future__ import annotations

import smtplib
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from alerts.payloads import alert_summary

from .base import DeliveryResult, Notifier

if TYPE_CHECKING:
    from alerts.models import AlertChannel, AlertEvent


class EmailNotifier(Notifier):
    def send(self, *, channel: AlertChannel, event: AlertEvent) -> DeliveryResult:
        summary = alert_summary(event.payload)
        context = {"summary": summary, "payload": event.payload, "data": event.payload.get("data", {}),
                   "site_url": settings.SITE_URL}
        message = EmailMultiAlternatives(
            subject=f"[Tokonomics] {summary}"[:200],
            body=render_to_string("alerts/email.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=list(channel.emails),
            headers={"X-Tokonomics-Alert-Id": event.webhook_id},
        )
        message.attach_alternative(render_to_string("alerts/email.html", context), "text/html")
        try:
            message.send()
        except (smtplib.SMTPException, OSError) as exc:
            return DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        return DeliveryResult(True)

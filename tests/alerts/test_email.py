"""Alert email through a real SMTP server (aiosmtpd on loopback): plain text and HTML, the summary as subject."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from alerts.evaluate import Touched, budget_thresholds_check
from alerts.models import AlertChannel, AlertDelivery
from billing.models import Budget

from ..support import free_port
from .conftest import Spender


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox(settings) -> Iterator[Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.mark.django_db
def test_alert_email_has_plain_and_html_parts_and_the_summary_as_subject(
    acme, smtp_inbox: Inbox, django_capture_on_commit_callbacks
) -> None:
    AlertChannel.objects.create(account=acme, name="ops", kind=AlertChannel.Kind.EMAIL,
                                emails=["ops@acme.test", "cfo@acme.test"])
    Budget.objects.create(account=acme, scope="feature", match="support-bot", period="day",
                          limit_usd=Decimal("20"), hard=False, alert_at=[80])
    now = datetime.now(UTC)
    Spender(acme)("16.5", now=now, feature="support-bot")
    with django_capture_on_commit_callbacks(execute=True):
        budget_thresholds_check(account_id=acme.pk, touched=Touched(features=frozenset({"support-bot"})), now=now)

    [(recipients, message)] = smtp_inbox.messages
    assert sorted(recipients) == ["cfo@acme.test", "ops@acme.test"]
    summary = "acme: feature support-bot budget at 80% ($16.5 of $20 this day)"
    assert message["Subject"] == f"[Tokonomics] {summary}"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    assert summary in plain.get_content()
    assert "budget.threshold_crossed" in plain.get_content()
    assert "<h2" in html.get_content() and "support-bot" in html.get_content()
    delivery = AlertDelivery.objects.get()
    assert delivery.succeeded and delivery.attempt == 1
    assert message["X-Tokonomics-Alert-Id"] == delivery.event.webhook_id


@pytest.mark.django_db
def test_unreachable_smtp_server_is_a_failed_attempt_retried_later(
    acme, settings, django_capture_on_commit_callbacks
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    AlertChannel.objects.create(account=acme, name="ops", kind=AlertChannel.Kind.EMAIL, emails=["ops@acme.test"])
    Budget.objects.create(account=acme, scope="account", period="day", limit_usd=Decimal("1"), alert_at=[100])
    Spender(acme)("1", now=datetime.now(UTC))
    with django_capture_on_commit_callbacks(execute=True):
        budget_thresholds_check(account_id=acme.pk, touched=Touched())
    delivery = AlertDelivery.objects.get()
    assert not delivery.succeeded and "ConnectionRefused" in delivery.error
    assert delivery.next_attempt_at is not None


@pytest.mark.django_db
def test_mail_server_that_never_answers_times_out_instead_of_holding_the_worker(
    acme, silent_smtp, django_capture_on_commit_callbacks
) -> None:
    AlertChannel.objects.create(account=acme, name="ops", kind=AlertChannel.Kind.EMAIL, emails=["ops@acme.test"])
    Budget.objects.create(account=acme, scope="account", period="day", limit_usd=Decimal("1"), alert_at=[100])
    Spender(acme)("1", now=datetime.now(UTC))
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        budget_thresholds_check(account_id=acme.pk, touched=Touched())
    assert time.monotonic() - started < 5  # EMAIL_TIMEOUT (0.5 s) per attempt, not the 15 s default
    delivery = AlertDelivery.objects.get()
    assert not delivery.succeeded and "timed out" in delivery.error
    assert delivery.next_attempt_at is not None

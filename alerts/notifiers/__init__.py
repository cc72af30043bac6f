"""One module per channel kind behind one base (see base.py); NOTIFIERS maps a kind to its notifier."""

from __future__ import annotations

from .base import DeliveryResult, Notifier
from .email import EmailNotifier
from .slack import SlackNotifier
from .webhook import WebhookNotifier

NOTIFIERS: dict[str, Notifier] = {
    "webhook": WebhookNotifier(),
    "email": EmailNotifier(),
    "slack": SlackNotifier(),
}

__all__ = ["NOTIFIERS", "DeliveryResult", "Notifier"]

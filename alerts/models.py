from __future__ import annotations

import base64
import os
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models

from billing.models import Account
from tokonomics.crypto import decrypt_secret, encrypt_secret, secret_context


def generate_webhook_secret() -> str:
    """Standard Webhooks secret: `whsec_` + base64 of random bytes (CONTRACT §6)."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


MASK = "…"  # where masked_url hides the middle of a secret URL


def masked_url(url: str) -> str:
    """What is shown of a secret URL: its scheme and host, and the last four characters."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/{MASK}{url[-4:]}"


# What a channel receives unless told otherwise: the budget alerts channels always had (CONTRACT §6), so a
# channel made before event types existed gets nothing new. `test` goes to the channel asked, always.
BUDGET_ALERT_TYPES = (
    "budget.threshold_crossed", "budget.exhausted", "budget.resolved", "budget.forecast", "spend.burn_rate",
    "plan.request_limit",
)
# Opt-in events (issue 19): a channel lists them in `event_types` to receive them.
OPT_IN_TYPES = (
    "key.created", "key.revoked", "key.rotated", "key.expiring", "rate_limit.exceeded", "budget.denied",
    "plan.limit_approaching", "budget.downgraded",
)
SUBSCRIBABLE_TYPES = BUDGET_ALERT_TYPES + OPT_IN_TYPES


def default_event_types() -> list[str]:
    return list(BUDGET_ALERT_TYPES)


class AlertChannel(models.Model):
    class Kind(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"
        SLACK = "slack"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alert_channels")
    name = models.CharField(max_length=100, help_text="How budgets and rules refer to this channel.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.URLField(max_length=500, blank=True, help_text="Masked for Slack channels (see set_url).")
    emails = models.JSONField(default=list, blank=True)
    secret_encrypted = models.TextField(blank=True, editable=False)
    # A Slack incoming-webhook URL carries its token in the path: it is a secret, kept encrypted.
    url_encrypted = models.TextField(blank=True, editable=False)
    # What the ciphertexts are bound to (tokonomics/crypto.py); set before the row has a pk.
    secret_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    enabled = models.BooleanField(default=True, help_text="A disabled channel is sent nothing until enabled again.")
    event_types = models.JSONField(
        default=default_event_types, blank=True, help_text="The event types this channel is sent (CONTRACT §6)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "kind", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="alertchannel_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def event_summary(self) -> list[str]:
        """What the channel is sent, shortly: "budget alerts" when it takes them all, then each other type."""
        chosen = set(self.event_types)
        budget = [t for t in BUDGET_ALERT_TYPES if t in chosen]
        head = ["budget alerts"] if len(budget) == len(BUDGET_ALERT_TYPES) else budget
        return head + [t for t in OPT_IN_TYPES if t in chosen]

    def set_secret(self, plaintext: str) -> None:
        context = secret_context(self, "secret_encrypted")
        self.secret_encrypted = encrypt_secret(plaintext, context=context) if plaintext else ""

    def get_secret(self) -> str:
        context = secret_context(self, "secret_encrypted")
        return decrypt_secret(self.secret_encrypted, context=context) if self.secret_encrypted else ""

    def set_url(self, url: str, *, kind: str | None = None) -> None:
        """Set where deliveries go, and the kind when it changes: every path that changes either comes
        here, so a Slack URL is stored encrypted (`url` keeps its masked form) and no other kind keeps an
        old Slack URL. The masked form of the current Slack URL, as reads return it, means "unchanged"."""
        kind = kind or self.kind
        masked_again = bool(self.url_encrypted) and url == self.url
        if masked_again and kind == self.Kind.SLACK:
            self.kind = kind
            return
        if masked_again or (kind == self.Kind.SLACK and MASK in url):
            raise ValidationError({"url": "this is a masked Slack URL (its middle is hidden): give the full URL, "
                                          "or leave url out to keep the current one"})
        self.kind = kind
        if kind == self.Kind.SLACK and url:
            self.url_encrypted = encrypt_secret(url, context=secret_context(self, "url_encrypted"))
            self.url = masked_url(url)
        else:
            self.url, self.url_encrypted = url, ""

    def destination_url(self) -> str:
        """Where deliveries go (the decrypted Slack URL)."""
        if self.url_encrypted and self.kind == self.Kind.SLACK:
            return decrypt_secret(self.url_encrypted, context=secret_context(self, "url_encrypted"))
        return self.url


class AlertRule(models.Model):
    """A rule beyond budget thresholds: today, runaway spend (burn rate) of a key, feature or tenant."""

    class Kind(models.TextChoices):
        BURN_RATE = "burn_rate"

    class Scope(models.TextChoices):
        ACCOUNT = "account"
        TENANT = "tenant"
        FEATURE = "feature"
        KEY = "key"
        SESSION = "session"  # an agent run: new, so no baseline; its spend over the floor in a window pages

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alert_rules")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.BURN_RATE)
    scope = models.CharField(max_length=10, choices=Scope.choices)
    match = models.CharField(max_length=200, blank=True, default="*")
    window_minutes = models.PositiveIntegerField(default=15)
    multiplier = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("5"))
    floor_usd = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal("1"), help_text="Spend in the window below this never alerts."
    )
    channels = models.ManyToManyField(AlertChannel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True, help_text="A disabled rule is not evaluated until enabled again.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "kind", "scope", "match"], name="alertrule_unique_target"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.scope} {self.match} (×{self.multiplier} over {self.window_minutes} min)"


class AlertEvent(models.Model):
    """One alert, fired once (its dedupe key is unique) and delivered to each of its channels."""

    class Type(models.TextChoices):
        THRESHOLD_CROSSED = "budget.threshold_crossed"
        EXHAUSTED = "budget.exhausted"
        RESOLVED = "budget.resolved"
        FORECAST = "budget.forecast"
        BURN_RATE = "spend.burn_rate"
        PLAN_REQUEST_LIMIT = "plan.request_limit"
        KEY_CREATED = "key.created"
        KEY_REVOKED = "key.revoked"
        KEY_ROTATED = "key.rotated"
        KEY_EXPIRING = "key.expiring"
        RATE_LIMIT_EXCEEDED = "rate_limit.exceeded"
        BUDGET_DENIED = "budget.denied"
        BUDGET_DOWNGRADED = "budget.downgraded"
        PLAN_LIMIT_APPROACHING = "plan.limit_approaching"
        TEST = "test"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alert_events")
    type = models.CharField(max_length=40, choices=Type.choices)
    dedupe_key = models.CharField(max_length=300, unique=True)
    webhook_id = models.CharField(max_length=40, unique=True, help_text="Same on every retry (Standard Webhooks).")
    payload = models.JSONField()
    channels = models.ManyToManyField(AlertChannel, blank=True, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "-created_at"], name="alertevent_account_time")]

    def __str__(self) -> str:
        return f"{self.type} ({self.account.slug}, {self.created_at:%Y-%m-%d %H:%M})"


class AlertDelivery(models.Model):
    """One attempt to deliver an event to a channel: every attempt is kept, for the app to show."""

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveSmallIntegerField()
    succeeded = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a failed attempt is retried; empty once delivered or given up."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["event", "channel", "attempt"], name="alertdelivery_unique_attempt"),
        ]
        indexes = [models.Index(fields=["next_attempt_at"], name="alertdelivery_due")]

    def __str__(self) -> str:
        outcome = "ok" if self.succeeded else f"failed ({self.status_code or self.error[:40]})"
        return f"{self.event.type} → {self.channel.name} #{self.attempt}: {outcome}"

    @property
    def plain_error(self) -> str:
        """The failure said plainly (the raw `error` stays for the details)."""
        # Imported here: it reads the notifiers' timeout, and the notifiers (httpx, Slack) must not load in a
        # proxy-only worker, which loads these models.
        from alerts.delivery_errors import delivery_error_text

        return delivery_error_text(kind=self.channel.kind, status_code=self.status_code, error=self.error)

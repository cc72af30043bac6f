"""Budgets (spend caps per scope and period) and an account's own model prices."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from .accounts import Account


class Budget(models.Model):
    class Scope(models.TextChoices):
        ACCOUNT = "account"
        TENANT = "tenant"
        FEATURE = "feature"
        KEY = "key"
        SESSION = "session"

    class Period(models.TextChoices):
        HOUR = "hour"
        DAY = "day"
        WEEK = "week"
        MONTH = "month"
        QUARTER = "quarter"
        TOTAL = "total"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="budgets")
    scope = models.CharField(max_length=10, choices=Scope.choices)
    match = models.CharField(
        max_length=200,
        blank=True,
        help_text="The tenant, feature, key or session this budget caps; '*' gives each one its own cap.",
    )
    period = models.CharField(max_length=10, choices=Period.choices)
    limit_usd = models.DecimalField(max_digits=14, decimal_places=6, validators=[MinValueValidator(Decimal(0))])
    hard = models.BooleanField(default=True, help_text="Hard budgets deny calls; soft ones only alert.")
    alert_at = models.JSONField(default=list, blank=True, help_text="Alert thresholds in percent.")
    channels = models.ManyToManyField("alerts.AlertChannel", blank=True, related_name="budgets")

    class OnExceed(models.TextChoices):
        DENY = "deny"
        DOWNGRADE = "downgrade"

    # Budget-aware downgrade: from `downgrade_at` percent of the limit, calls this budget covers are served by
    # `downgrade_to` (a route or a model of the call's endpoint) instead; the limit itself still denies.
    on_exceed = models.CharField(max_length=10, choices=OnExceed.choices, default=OnExceed.DENY)
    downgrade_to = models.CharField(max_length=200, blank=True, default="",
                                    help_text="A route or model name, for on_exceed = downgrade.")
    downgrade_at = models.PositiveSmallIntegerField(
        default=90, validators=[MinValueValidator(1)], help_text="Percent of the limit the downgrade starts at."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "scope", "match", "period"], name="budget_unique_target"),
        ]
        ordering = ["account", "scope", "match", "period"]

    def __str__(self) -> str:
        target = f" {self.match}" if self.match else ""
        kind = "hard" if self.hard else "soft"
        return f"{self.scope}{target} / {self.period}: ${self.limit_usd} ({kind})"

    def clean(self) -> None:
        if self.scope == self.Scope.ACCOUNT and self.match:
            raise ValidationError({"match": "An account budget covers the whole account; leave match empty."})
        if self.scope != self.Scope.ACCOUNT and not self.match:
            raise ValidationError({"match": f"A {self.scope} budget needs a value to match, or '*'."})
        bad = [t for t in self.alert_at or [] if not isinstance(t, int) or not 0 < t <= 1000]
        if bad:
            raise ValidationError({"alert_at": f"Thresholds are whole percentages from 1 to 1000, not {bad}."})
        if self.on_exceed == self.OnExceed.DOWNGRADE:
            if not self.downgrade_to or len(self.downgrade_to) > 200 or not self.downgrade_to.isprintable():
                raise ValidationError({"downgrade_to": "A downgrade needs the route or model it serves calls with."})
            if not 1 <= self.downgrade_at <= 99:
                raise ValidationError({"downgrade_at": "A percentage of the limit from 1 to 99."})


class PriceOverride(models.Model):
    """An account's own price for a model, winning over the genai-prices catalogue."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="price_overrides")
    provider = models.CharField(max_length=63, help_text="Provider endpoint slug.")
    model = models.CharField(max_length=200)
    input_per_mtok = models.DecimalField(max_digits=14, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=14, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cache_write_per_mtok = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "provider", "model"], name="price_override_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}: ${self.input_per_mtok} in, ${self.output_per_mtok} out per MTok"

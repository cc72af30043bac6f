"""Plans, accounts and the seats that let people into them."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from tokonomics.validation import SLUG_VALIDATOR

# The response cache's bounds: a week's TTL at most (per-route overrides included), 16 MiB an answer, 4 GiB an account.
MAX_CACHE_TTL_SECONDS = 7 * 24 * 3600
MAX_CACHE_ENTRY_BYTES = 16 * 1024 * 1024
MAX_CACHE_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
HEX_COLOUR_VALIDATOR = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a colour like #4f46e5.")


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Paris).")


class Plan(models.Model):
    """A price plan. Limits left empty mean unlimited (CONTRACT §3)."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=60)
    price_usd_month = models.DecimalField(max_digits=10, decimal_places=2)
    max_seats = models.PositiveIntegerField(null=True, blank=True)
    max_alert_rules = models.PositiveIntegerField(null=True, blank=True)
    retention_days = models.PositiveIntegerField()
    monthly_request_limit = models.PositiveBigIntegerField(null=True, blank=True)
    sso = models.BooleanField(default=False)
    white_label = models.BooleanField(default=False)

    class Meta:
        ordering = ["price_usd_month"]

    def __str__(self) -> str:
        return self.name


class Account(models.Model):
    class RedisFallback(models.TextChoices):
        DEFAULT = "default", "Default (deny calls a hard budget covers, let the rest through)"
        OPEN = "open", "Open (let every call through, unenforced)"
        CLOSED = "closed", "Closed (deny every call with 503)"

    slug = models.CharField(max_length=63, unique=True, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=120)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="accounts")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the plan's retention when set."
    )
    on_redis_unavailable = models.CharField(
        max_length=10, choices=RedisFallback.choices, default=RedisFallback.DEFAULT
    )
    allow_unmetered_routes = models.BooleanField(
        default=False, help_text="Let routes the proxy cannot meter (files, batches…) through."
    )
    allow_unpriced_models = models.BooleanField(
        default=False,
        help_text="Let calls a hard budget covers use models without a price (catalogue or the account's own); "
                  "they are recorded with an unknown cost and count nothing against budgets.",
    )
    # The response cache (proxy/response_cache.py, CONTRACT "Routes and cache"): off unless an admin turns it on.
    cache_enabled = models.BooleanField(
        default=False, help_text="Keep successful answers, encrypted, and serve identical calls from them at no cost."
    )
    cache_ttl_seconds = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1), MaxValueValidator(MAX_CACHE_TTL_SECONDS)],
        help_text="How long a kept answer is served.",
    )
    cache_max_entry_bytes = models.PositiveIntegerField(
        default=1024 * 1024, validators=[MinValueValidator(1024), MaxValueValidator(MAX_CACHE_ENTRY_BYTES)],
        help_text="Answers larger than this are not kept.",
    )
    cache_max_total_bytes = models.PositiveBigIntegerField(
        default=64 * 1024 * 1024, validators=[MinValueValidator(1024), MaxValueValidator(MAX_CACHE_TOTAL_BYTES)],
        help_text="The account's answers kept at most; past it the oldest go first.",
    )
    cache_nonzero_temperature = models.BooleanField(
        default=False,
        help_text="Also keep answers to calls sampled with a temperature above 0 (or none given: the providers' "
                  "default is 1), which would each have been different.",
    )
    brand_name = models.CharField(max_length=60, blank=True)
    brand_logo_url = models.URLField(blank=True)
    brand_accent_color = models.CharField(max_length=7, blank=True, validators=[HEX_COLOUR_VALIDATOR])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_retention_days(self) -> int:
        return self.retention_days or self.plan.retention_days


class Seat(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"
        VIEWER = "viewer"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="seats")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="seats")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "user"], name="seat_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.account.slug} ({self.role})"

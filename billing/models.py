from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from tokonomics.audit import ActorKind

SLUG_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,62}$", "Use lower-case letters, digits and dashes (max 63 characters)."
)
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


class Budget(models.Model):
    class Scope(models.TextChoices):
        ACCOUNT = "account"
        TENANT = "tenant"
        FEATURE = "feature"
        KEY = "key"

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
        help_text="The tenant, feature or key name this budget caps; '*' gives each one its own cap.",
    )
    period = models.CharField(max_length=10, choices=Period.choices)
    limit_usd = models.DecimalField(max_digits=14, decimal_places=6, validators=[MinValueValidator(Decimal(0))])
    hard = models.BooleanField(default=True, help_text="Hard budgets deny calls; soft ones only alert.")
    alert_at = models.JSONField(default=list, blank=True, help_text="Alert thresholds in percent.")
    channels = models.ManyToManyField("alerts.AlertChannel", blank=True, related_name="budgets")
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


class UsageRecord(models.Model):
    """One proxied call (CONTRACT §4). Never the prompt, never the response."""

    class Source(models.TextChoices):
        REPORTED = "reported"
        ESTIMATED = "estimated"

    request_id = models.CharField(max_length=40, unique=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_records")
    key = models.ForeignKey(
        "proxy.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    feature = models.CharField(max_length=200, blank=True)
    tenant = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=60, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=63)
    model = models.CharField(max_length=200, blank=True)
    served_model = models.CharField(max_length=200, blank=True)
    operation = models.CharField(max_length=20, blank=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(
        max_digits=18, decimal_places=9, null=True, blank=True, help_text="Empty when the model's price is unknown."
    )
    latency_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField()
    denied_scope = models.CharField(max_length=40, blank=True)
    streamed = models.BooleanField(default=False)
    usage_source = models.CharField(max_length=10, choices=Source.choices, default=Source.REPORTED)
    enforced = models.BooleanField(
        default=True, help_text="False when Redis was unreachable and the call went through."
    )
    created_at = models.DateTimeField(db_index=False)

    class Meta:
        indexes = [
            models.Index(fields=["account", "created_at"], name="usage_account_time"),
            models.Index(fields=["account", "feature", "created_at"], name="usage_account_feature_time"),
            models.Index(fields=["account", "tenant", "created_at"], name="usage_account_tenant_time"),
            models.Index(fields=["account", "model", "created_at"], name="usage_account_model_time"),
            models.Index(fields=["created_at"], name="usage_time"),
        ]

    def __str__(self) -> str:
        return self.request_id


class RollupSums(models.Model):
    """What every rollup adds up for the calls of its cell (an hour or a UTC day × some dimensions)."""

    requests = models.PositiveBigIntegerField(default=0)
    streamed_requests = models.PositiveBigIntegerField(default=0)
    estimated_requests = models.PositiveBigIntegerField(default=0)
    unknown_cost_requests = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=9, default=0)
    latency_ms_total = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True


KEY_ID_HELP = "0 when the call had no key (kept after a key is deleted)."


class AllDimensions(RollupSums):
    """The cell of a rollup of every dimension (UsageRollup and its day rows)."""

    feature = models.CharField(max_length=200, blank=True)
    tenant = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=60, blank=True)
    provider = models.CharField(max_length=63)
    model = models.CharField(max_length=200, blank=True)
    key_id = models.BigIntegerField(default=0, help_text=KEY_ID_HELP)
    status_code = models.PositiveSmallIntegerField()

    class Meta:
        abstract = True


class SummaryDimensions(RollupSums):
    """The cell of a rollup of every dimension but the tenant (UsageSummaryRollup and its day rows)."""

    feature = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=60, blank=True)
    provider = models.CharField(max_length=63)
    model = models.CharField(max_length=200, blank=True)
    key_id = models.BigIntegerField(default=0, help_text=KEY_ID_HELP)
    status_code = models.PositiveSmallIntegerField()

    class Meta:
        abstract = True


class TenantDimensions(RollupSums):
    """The cell of a rollup of the tenant alone (UsageTenantRollup and its day rows)."""

    tenant = models.CharField(max_length=200, blank=True)
    status_code = models.PositiveSmallIntegerField()

    class Meta:
        abstract = True


class UsageRollup(AllDimensions):
    """Usage summed per hour and dimension, maintained as records are ingested. Dashboards read
    these instead of scanning raw records, and they outlive the records' retention.

    Every record is also added to a day row (UsageDayRollup) and to the same two spans of two narrower
    rollups: every dimension but the tenant (UsageSummaryRollup) and the tenant alone (UsageTenantRollup).
    A few hundred tenants multiply the cells here twentyfold; a view reads the narrowest rollup that keeps
    its dimensions, and the whole days of a range from day rows (billing.rollups.rollup_rows)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_rollups")
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "hour", "feature", "tenant", "environment", "provider", "model", "key_id",
                        "status_code"],
                name="usagerollup_unique_cell",
            ),
        ]
        indexes = [models.Index(fields=["account", "hour"], name="usagerollup_account_hour"),
                   models.Index(fields=["account", "tenant", "hour"], name="usagerollup_tenant_hour")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}h {self.provider}/{self.model}: {self.requests} calls"


class UsageDayRollup(AllDimensions):
    """UsageRollup's cells per UTC day."""

    # No index of its own: the unique cell's index leads with the account.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_day_rollups", db_index=False)
    day = models.DateTimeField(help_text="Midnight UTC.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "feature", "tenant", "environment", "provider", "model", "key_id",
                        "status_code"],
                name="usagedayrollup_unique_cell",
            ),
        ]
        indexes = [models.Index(fields=["account", "tenant", "day"], name="usagedayrollup_tenant_day")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day:%Y-%m-%d} {self.provider}/{self.model}: {self.requests} calls"


class UsageSummaryRollup(SummaryDimensions):
    """Usage per hour × every dimension but the tenant: about a hundred cells an hour where the tenants
    make thousands, for totals, charts and the other breakdowns."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_summary_rollups",
                                db_index=False)
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "hour", "feature", "environment", "provider", "model", "key_id", "status_code"],
                name="usagesummaryrollup_unique_cell",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}h {self.feature}: {self.requests} calls"


class UsageSummaryDayRollup(SummaryDimensions):
    """UsageSummaryRollup's cells per UTC day."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_summary_day_rollups",
                                db_index=False)
    day = models.DateTimeField(help_text="Midnight UTC.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "feature", "environment", "provider", "model", "key_id", "status_code"],
                name="usagesummarydayrollup_unique_cell",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day:%Y-%m-%d} {self.feature}: {self.requests} calls"


class UsageTenantRollup(TenantDimensions):
    """Usage per hour × tenant × status, for the tenant breakdown."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_tenant_rollups",
                                db_index=False)
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "hour", "tenant", "status_code"],
                                    name="usagetenantrollup_unique_cell"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}h {self.tenant}: {self.requests} calls"


class UsageTenantDayRollup(TenantDimensions):
    """UsageTenantRollup's cells per UTC day."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_tenant_day_rollups",
                                db_index=False)
    day = models.DateTimeField(help_text="Midnight UTC.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "day", "tenant", "status_code"],
                                    name="usagetenantdayrollup_unique_cell"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day:%Y-%m-%d} {self.tenant}: {self.requests} calls"


class UsageTagRollup(models.Model):
    """Spend per hour and tag (`X-Tokonomics-Tags: intent=summarize`), for the tag breakdown."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_tag_rollups")
    hour = models.DateTimeField()
    tag = models.CharField(max_length=60)
    value = models.CharField(max_length=200)
    requests = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=9, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "hour", "tag", "value"], name="usagetagrollup_unique_cell"),
        ]
        indexes = [models.Index(fields=["account", "hour"], name="usagetagrollup_account_hour")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}h {self.tag}={self.value}: {self.requests} calls"
from .models_tokens import ManagementToken  # noqa: E402,F401


class AuditEntry(models.Model):
    """Who changed what in an account, with the values before and after (secrets never included)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="audit_entries")
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices, default=ActorKind.USER)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_token = models.ForeignKey("billing.ManagementToken", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="audit_entries")
    actor_label = models.CharField(max_length=200, help_text="Who, kept even if the user or token is deleted.")
    action = models.CharField(max_length=60)
    target = models.CharField(max_length=200)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "-created_at"], name="audit_account_time")]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target}"
from .models_deadletters import UsageDeadLetter  # noqa: E402,F401
from .models_invitations import Invitation  # noqa: E402,F401
from .models_sso import SsoConfig, SsoDomain  # noqa: E402,F401

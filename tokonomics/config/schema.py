"""The shape of an applyconfig file (CONTRACT §5), validated before anything is written."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerts.schemas import EventType
from billing.models.accounts import MAX_CACHE_ENTRY_BYTES, MAX_CACHE_TOTAL_BYTES, MAX_CACHE_TTL_SECONDS
from billing.usage.retention import MAX_RETENTION_DAYS
from tokonomics.validation import SLUG_PATTERN

PER_MINUTE_MAX = 2_147_483_647  # the rate limits' PositiveIntegerField ceiling


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProviderIn(Strict):
    slug: str = Field(pattern=SLUG_PATTERN)
    kind: Literal["openai", "anthropic", "gemini", "azure-openai"] | None = None
    base_url: str | None = None
    pricing_provider: str | None = None
    deployments: dict[str, str] | None = None  # Azure OpenAI: deployment → model; omitted leaves them as they are
    api_key: str | None = None
    api_key_env: str | None = None

    @model_validator(mode="after")
    def one_credential_source(self) -> ProviderIn:
        if self.api_key and self.api_key_env:
            raise ValueError("give api_key or api_key_env, not both")
        return self


class SeatIn(Strict):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    role: Literal["owner", "admin", "member", "viewer"] = "member"
    password_env: str | None = None


class KeyIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    key: str | None = Field(default=None, pattern=r"^mk_[A-Za-z0-9_-]{32,}$")
    environment: str = Field(default="production", min_length=1, max_length=60)
    allowed_models: list[str] = []
    expires_at: datetime | None = None
    requests_per_minute: int | None = Field(default=None, ge=1, le=PER_MINUTE_MAX)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=PER_MINUTE_MAX)
    max_concurrent: int | None = Field(default=None, ge=1, le=PER_MINUTE_MAX)
    # The key's own guardrail policy (CONTRACT: Guardrails); left out: as it is; null: removed.
    guardrails: dict[str, Any] | None = None

    @field_validator("expires_at")
    @classmethod
    def aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2027-01-01T00:00:00Z")
        return value


class BudgetIn(Strict):
    scope: Literal["account", "tenant", "feature", "key", "session"]
    match: str = ""
    period: Literal["hour", "day", "week", "month", "quarter", "total"]
    limit_usd: Decimal = Field(ge=0, max_digits=14, decimal_places=6)
    hard: bool = True
    alert_at: list[int] = [50, 75, 90, 100]
    channels: list[str] | None = None
    # Budget-aware downgrade: from downgrade_at percent of the limit, calls are served by downgrade_to (a route
    # or a model) instead; the limit still denies.
    on_exceed: Literal["deny", "downgrade"] = "deny"
    downgrade_to: str = Field(default="", max_length=200)
    downgrade_at: int = Field(default=90, ge=1, le=99)

    @field_validator("alert_at")
    @classmethod
    def percentages(cls, value: list[int]) -> list[int]:
        if any(not 0 < t <= 1000 for t in value):
            raise ValueError("thresholds are whole percentages from 1 to 1000")
        return sorted(set(value))

    @model_validator(mode="after")
    def match_fits_scope(self) -> BudgetIn:
        if self.scope == "account" and self.match:
            raise ValueError("an account budget takes no match")
        if self.scope != "account" and not self.match:
            raise ValueError(f"a {self.scope} budget needs match: a value, or '*' for each one")
        if self.on_exceed == "downgrade" and not self.downgrade_to:
            raise ValueError("on_exceed: downgrade needs downgrade_to: the route or model calls are served by")
        return self


class AlertChannelIn(Strict):
    kind: Literal["webhook", "email", "slack"]
    name: str | None = Field(default=None, max_length=100)
    url: str | None = None
    to: list[str] | None = None
    secret: str | None = None
    secret_env: str | None = None
    # Left out: a new channel gets the default (budget alerts), an existing one keeps its choice.
    event_types: list[EventType] | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def target_fits_kind(self) -> AlertChannelIn:
        if self.kind == "email":
            if not self.to:
                raise ValueError("an email channel needs to: [addresses]")
            if self.url:
                raise ValueError("an email channel takes to:, not url:")
        elif not self.url:
            raise ValueError(f"a {self.kind} channel needs url")
        if self.secret and self.secret_env:
            raise ValueError("give secret or secret_env, not both")
        if self.kind != "webhook" and (self.secret or self.secret_env):
            raise ValueError("only webhook channels are signed")
        return self

    @property
    def resolved_name(self) -> str:
        if self.name:
            return self.name
        if self.kind == "slack":  # the URL is a secret: named by a digest of it, never by it
            return f"slack:{hashlib.sha256((self.url or '').encode()).hexdigest()[:16]}"
        return f"{self.kind}:{self.url}" if self.url else f"email:{','.join(self.to or [])}"[:100]


class AlertRuleIn(Strict):
    kind: Literal["burn_rate"] = "burn_rate"
    scope: Literal["account", "tenant", "feature", "key", "session"]
    match: str = "*"
    window_minutes: int = Field(default=15, ge=1, le=1440)
    multiplier: Decimal = Field(default=Decimal(5), gt=1, max_digits=6, decimal_places=2)
    floor_usd: Decimal = Field(default=Decimal(1), ge=0, max_digits=12, decimal_places=6)
    channels: list[str] | None = None


class PriceIn(Strict):
    provider: str
    model: str = Field(min_length=1)
    input_per_mtok: Decimal = Field(ge=0, max_digits=14, decimal_places=6)
    output_per_mtok: Decimal = Field(ge=0, max_digits=14, decimal_places=6)
    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=6)
    cache_write_per_mtok: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=6)


class CacheIn(Strict):
    """The account's response cache (`cache:` under an account); left out, it stays off."""

    enabled: bool = False
    ttl_seconds: int = Field(default=3600, ge=1, le=MAX_CACHE_TTL_SECONDS)
    max_entry_bytes: int = Field(default=1024 * 1024, ge=1024, le=MAX_CACHE_ENTRY_BYTES)
    max_total_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=MAX_CACHE_TOTAL_BYTES)
    nonzero_temperature: bool = False


class RouteTargetIn(Strict):
    provider: str = Field(pattern=SLUG_PATTERN)  # one of the account's providers (by slug)
    model: str = Field(min_length=1, max_length=200)
    weight: int = Field(default=1, ge=0, le=1000)
    timeout_seconds: float | None = Field(default=None, gt=0, le=600)


class RouteIn(Strict):
    """A model name clients call, served by its targets (docs/CONTRACT.md "Routes and cache")."""

    name: str = Field(min_length=1, max_length=200)
    strategy: Literal["fallback", "weighted", "lowest-cost", "lowest-latency"] = "fallback"
    targets: list[RouteTargetIn] = Field(min_length=1, max_length=10)
    max_attempts: int = Field(default=3, ge=1, le=10)
    deadline_seconds: float = Field(default=60.0, gt=0, le=600)
    retries: int = Field(default=1, ge=0, le=10)
    backoff_ms: int = Field(default=200, ge=0, le=60_000)
    cache_ttl_seconds: int | None = Field(default=None, ge=1, le=MAX_CACHE_TTL_SECONDS)  # None: the account's
    cache_nonzero_temperature: bool | None = None

    def stored_targets(self) -> list[dict[str, object]]:
        """The targets as Route.targets holds them (an endpoint by its slug)."""
        return [{"endpoint": t.provider, "model": t.model, "weight": t.weight, "timeout_seconds": t.timeout_seconds}
                for t in self.targets]


class AccountIn(Strict):
    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=120)
    plan: str
    timezone: str = "UTC"
    retention_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
    on_redis_unavailable: Literal["default", "open", "closed"] = "default"
    allow_unmetered_routes: bool = False
    allow_unpriced_models: bool = False
    cache: CacheIn = CacheIn()
    brand_name: str = ""
    brand_logo_url: str = ""
    brand_accent_color: str = Field(default="", pattern=r"^(#[0-9a-fA-F]{6})?$")
    providers: list[ProviderIn] = []
    seats: list[SeatIn] = []
    keys: list[KeyIn] = []
    budgets: list[BudgetIn] = []
    alert_channels: list[AlertChannelIn] = []
    alert_rules: list[AlertRuleIn] = []
    prices: list[PriceIn] = []
    routes: list[RouteIn] = []
    # The account-wide default guardrail policy; left out: as it is; null: removed.
    guardrails: dict[str, Any] | None = None


class ConfigIn(Strict):
    accounts: list[AccountIn]

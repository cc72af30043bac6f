"""REST API shapes of budgets, usage and the account. Money goes out as decimal strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Field, Schema
from pydantic.json_schema import SkipJsonSchema

from billing.models import (
    MAX_CACHE_ENTRY_BYTES,
    MAX_CACHE_TOTAL_BYTES,
    MAX_CACHE_TTL_SECONDS,
    Budget,
    Plan,
    UsageRecord,
)
from billing.usage.selectors import GroupBy
from tokonomics.api_common import InSchema, ObjectId, Timestamp, field_decimal_string, not_null, plain_text

Scope = Literal["account", "tenant", "feature", "key", "session"]
Period = Literal["hour", "day", "week", "month", "quarter", "total"]
Match = Annotated[str, plain_text(max_length=200)]
LimitUsd = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=6)]
Threshold = Annotated[int, Field(ge=1, le=1000)]
Thresholds = Annotated[list[Threshold], Field(max_length=20)]
ChannelIds = Annotated[list[ObjectId], Field(max_length=50)]
Filter = Annotated[str, plain_text(max_length=200)]
Cursor = Annotated[str, plain_text(max_length=200)]
Status = Annotated[str, plain_text(max_length=3, pattern=r"^[1-5]([0-9]{2}|xx)$")]
DecimalString = Annotated[str, Field(examples=["12.500000"], description="A decimal number, as a string.")]


OnExceed = Literal["deny", "downgrade"]
DowngradeTo = Annotated[str, plain_text(max_length=200)]
DowngradeAt = Annotated[int, Field(ge=1, le=99)]
ON_EXCEED_HELP = ("deny: a hard budget refuses calls at its limit · downgrade: from downgrade_at percent of the "
                  "limit, calls are served by downgrade_to (a route or model) instead; the limit still denies")


class BudgetOut(Schema):
    id: int
    scope: str
    match: str
    period: str
    limit_usd: DecimalString
    hard: bool
    alert_at: list[int]
    channel_ids: list[int] = Field(description="Alert channels; empty means every channel of the account.")
    on_exceed: str = Field(description=ON_EXCEED_HELP)
    downgrade_to: str
    downgrade_at: int
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_limit_usd(obj: Budget) -> str:
        return field_decimal_string(obj, "limit_usd")

    @staticmethod
    def resolve_channel_ids(obj: Budget) -> list[int]:
        return sorted(channel.pk for channel in obj.channels.all())


class BudgetIn(InSchema):
    scope: Scope
    match: Match = Field(
        default="", description="Empty for an account budget; otherwise a tenant, feature or key name, or '*'."
    )
    period: Period
    limit_usd: LimitUsd = Field(description="A decimal (a string keeps every digit).")
    hard: bool = Field(default=True, description="Hard budgets deny calls; soft ones only alert.")
    alert_at: Thresholds = Field(default=[50, 75, 90, 100], description="Alert thresholds, in percent.")
    channel_ids: ChannelIds = []
    on_exceed: OnExceed = Field(default="deny", description=ON_EXCEED_HELP)
    downgrade_to: DowngradeTo = Field(default="", description="The route or model a downgrade serves calls by.")
    downgrade_at: DowngradeAt = Field(default=90, description="Percent of the limit the downgrade starts at.")


class BudgetPatch(InSchema):
    """Only the fields sent change; the budget is then validated whole."""

    scope: Scope | SkipJsonSchema[None] = None
    match: Match | SkipJsonSchema[None] = None
    period: Period | SkipJsonSchema[None] = None
    limit_usd: LimitUsd | SkipJsonSchema[None] = None
    hard: bool | SkipJsonSchema[None] = None
    alert_at: Thresholds | SkipJsonSchema[None] = None
    channel_ids: ChannelIds | SkipJsonSchema[None] = None
    on_exceed: OnExceed | SkipJsonSchema[None] = None
    downgrade_to: DowngradeTo | SkipJsonSchema[None] = None
    downgrade_at: DowngradeAt | SkipJsonSchema[None] = None

    reject_null = not_null("scope", "match", "period", "limit_usd", "hard", "alert_at", "channel_ids", "on_exceed",
                           "downgrade_to", "downgrade_at")


class UsageFilterQuery(Schema):
    since: Timestamp | None = Field(default=None, description="ISO-8601 with a time zone, inclusive.")
    until: Timestamp | None = Field(default=None, description="ISO-8601 with a time zone, exclusive.")
    feature: Filter | None = None
    tenant: Filter | None = None
    model: Filter | None = None
    provider: Filter | None = None
    key_id: ObjectId | None = None
    environment: Filter | None = None
    status: Status | None = Field(default=None, description="A status code (429) or a class (4xx).")


class UsageRecordQuery(UsageFilterQuery):
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: Cursor | None = Field(default=None, description="next_cursor of the previous page.")


class UsageAggregateQuery(UsageFilterQuery):
    group_by: GroupBy


class UsageRecordOut(Schema):
    request_id: str
    key_id: int | None
    key: str | None = Field(description="The key's name.")
    feature: str
    tenant: str
    session: str = Field(description="The agent run (X-Tokonomics-Session); empty when the call named none.")
    session_name: str
    session_git: str
    environment: str
    tags: dict[str, str]
    provider: str
    model: str
    served_model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: DecimalString | None = Field(description="Null when the model's price is unknown.")
    provider_cost_usd: DecimalString | None = Field(
        description="What the provider said the call cost (OpenRouter, Perplexity), beside cost_usd; never charged.")
    latency_ms: int
    status_code: int
    denied_scope: str
    streamed: bool
    usage_source: str
    route: str = Field(description="The route the call's model named; empty when none.")
    requested_model: str = Field(description="The model the client asked for, when another served the call.")
    downgraded_from: str = Field(description="The model a budget's downgrade replaced; empty when none.")
    attempts: list[dict[str, str | int]] = Field(
        description="A routed call's upstream attempts, in order: {target, outcome, ms}.")
    routing_saved_usd: DecimalString | None = Field(
        description="What routing saved: the requested model's price for this usage less the served model's.")
    created_at: datetime
    cache_hit: bool = Field(description="Answered from the account's response cache: no upstream call, cost 0.")
    cache_saved_usd: DecimalString | None = Field(
        description="A cache hit: what the call would have cost upstream (null otherwise, or when unpriced).")

    @staticmethod
    def resolve_routing_saved_usd(obj: UsageRecord) -> str | None:
        return None if obj.routing_saved_usd is None else field_decimal_string(obj, "routing_saved_usd")

    @staticmethod
    def resolve_key(obj: UsageRecord) -> str | None:
        return obj.key.name if obj.key is not None else None

    @staticmethod
    def resolve_cost_usd(obj: UsageRecord) -> str | None:
        return None if obj.cost_usd is None else field_decimal_string(obj, "cost_usd")

    @staticmethod
    def resolve_cache_saved_usd(obj: UsageRecord) -> str | None:
        return None if obj.cache_saved_usd is None else field_decimal_string(obj, "cache_saved_usd")

    @staticmethod
    def resolve_provider_cost_usd(obj: UsageRecord) -> str | None:
        return None if obj.provider_cost_usd is None else field_decimal_string(obj, "provider_cost_usd")


class UsageRecordPageOut(Schema):
    items: list[UsageRecordOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class UsageTotalsOut(Schema):
    requests: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: DecimalString = Field(description="Spend of the calls whose price is known.")
    unknown_cost_requests: int = Field(description="Calls whose model has no known price, not in cost_usd.")


class UsageGroupOut(UsageTotalsOut):
    group: str | None = Field(description="The group's value (a key's name for group_by=key); null: calls without it.")
    key_id: int | None = Field(description="The key's id, for group_by=key.")


class UsageAggregatesOut(Schema):
    group_by: str
    since: datetime | None
    until: datetime | None
    groups: list[UsageGroupOut]
    total: UsageTotalsOut


class SessionRollupOut(Schema):
    name: str = Field(description="The model or provider.")
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: DecimalString


class SessionOut(Schema):
    session: str
    name: str
    calls: int
    denied: int = Field(description="Calls a budget or limit refused.")
    input_tokens: int
    output_tokens: int
    cost_usd: DecimalString
    first_at: datetime
    last_at: datetime
    duration_seconds: float
    models: list[str]


class SessionSummaryOut(SessionOut):
    git_start: str = Field(description="The git context its first call carried (tokonomics run sends it).")
    git_end: str = Field(description="The git context its last call carried.")
    by_model: list[SessionRollupOut]
    by_provider: list[SessionRollupOut]


class SessionQuery(Schema):
    limit: int = Field(default=50, ge=1, le=200)


class PlanOut(Schema):
    slug: str
    name: str
    price_usd_month: DecimalString
    max_seats: int | None = Field(description="Null: unlimited.")
    max_alert_rules: int | None = Field(description="Null: unlimited.")
    retention_days: int
    monthly_request_limit: int | None = Field(description="Null: unlimited.")
    sso: bool
    white_label: bool

    @staticmethod
    def resolve_price_usd_month(obj: Plan) -> str:
        return field_decimal_string(obj, "price_usd_month")


class TokenOut(Schema):
    name: str
    prefix: str
    role: str = Field(description="admin (read and write) or viewer (read only).")
    expires_at: datetime | None


class AccountOut(Schema):
    slug: str
    name: str
    timezone: str
    retention_days: int = Field(description="How long usage records are kept: the account's own, else the plan's.")
    plan: PlanOut
    token: TokenOut = Field(description="The management token making this request.")
    on_redis_unavailable: Literal["default", "open", "closed"] = Field(
        description="When Redis is unreachable: default denies calls a hard budget covers (503) and lets the rest "
                    "through unenforced; open lets every call through; closed denies every call.")
    allow_unmetered_routes: bool = Field(description="Routes the proxy cannot meter (files, batches…) go through.")
    allow_unpriced_models: bool = Field(
        description="Calls a hard budget covers may use models without a price (else 403 model_unpriced); they are "
                    "recorded with an unknown cost.")
    cache_enabled: bool = Field(description="The response cache: identical calls answered from a kept, encrypted "
                                            "answer at no cost (off by default).")
    cache_ttl_seconds: int = Field(description="How long a kept answer is served.")
    cache_max_entry_bytes: int = Field(description="Answers larger than this are not kept.")
    cache_max_total_bytes: int = Field(description="The account's kept answers at most; past it the oldest go first.")
    cache_nonzero_temperature: bool = Field(
        description="Also cache calls sampled with a temperature above 0 (or none given, the providers' default 1).")


class AccountPatch(InSchema):
    """The account's proxy policy; only the fields sent change."""

    on_redis_unavailable: Literal["default", "open", "closed"] | SkipJsonSchema[None] = None
    allow_unmetered_routes: bool | SkipJsonSchema[None] = None
    allow_unpriced_models: bool | SkipJsonSchema[None] = None
    cache_enabled: bool | SkipJsonSchema[None] = None
    cache_ttl_seconds: Annotated[int, Field(ge=1, le=MAX_CACHE_TTL_SECONDS)] | SkipJsonSchema[None] = None
    cache_max_entry_bytes: Annotated[int, Field(ge=1024, le=MAX_CACHE_ENTRY_BYTES)] | SkipJsonSchema[None] = None
    cache_max_total_bytes: Annotated[int, Field(ge=1024, le=MAX_CACHE_TOTAL_BYTES)] | SkipJsonSchema[None] = None
    cache_nonzero_temperature: bool | SkipJsonSchema[None] = None

    reject_null = not_null("on_redis_unavailable", "allow_unmetered_routes", "allow_unpriced_models", "cache_enabled",
                           "cache_ttl_seconds", "cache_max_entry_bytes", "cache_max_total_bytes",
                           "cache_nonzero_temperature")

"""REST API shapes of budgets, usage and the account. Money goes out as decimal strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Field, Schema
from pydantic.json_schema import SkipJsonSchema

from billing.models import Budget, Plan, UsageRecord
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


class BudgetOut(Schema):
    id: int
    scope: str
    match: str
    period: str
    limit_usd: DecimalString
    hard: bool
    alert_at: list[int]
    channel_ids: list[int] = Field(description="Alert channels; empty means every channel of the account.")
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


class BudgetPatch(InSchema):
    """Only the fields sent change; the budget is then validated whole."""

    scope: Scope | SkipJsonSchema[None] = None
    match: Match | SkipJsonSchema[None] = None
    period: Period | SkipJsonSchema[None] = None
    limit_usd: LimitUsd | SkipJsonSchema[None] = None
    hard: bool | SkipJsonSchema[None] = None
    alert_at: Thresholds | SkipJsonSchema[None] = None
    channel_ids: ChannelIds | SkipJsonSchema[None] = None

    reject_null = not_null("scope", "match", "period", "limit_usd", "hard", "alert_at", "channel_ids")


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
    guardrail_hits: list[dict[str, str | int]] = Field(
        description='Guardrail rules that matched: [{"rule", "action", "count"}]; never the text.')
    created_at: datetime

    @staticmethod
    def resolve_key(obj: UsageRecord) -> str | None:
        return obj.key.name if obj.key is not None else None

    @staticmethod
    def resolve_cost_usd(obj: UsageRecord) -> str | None:
        return None if obj.cost_usd is None else field_decimal_string(obj, "cost_usd")

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


class AccountPatch(InSchema):
    """The account's proxy policy; only the fields sent change."""

    on_redis_unavailable: Literal["default", "open", "closed"] | SkipJsonSchema[None] = None
    allow_unmetered_routes: bool | SkipJsonSchema[None] = None
    allow_unpriced_models: bool | SkipJsonSchema[None] = None

    reject_null = not_null("on_redis_unavailable", "allow_unmetered_routes", "allow_unpriced_models")

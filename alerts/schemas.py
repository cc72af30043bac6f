"""REST API shapes of alert channels and rules. A channel's signing secret goes in, and out only once."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic.json_schema import SkipJsonSchema

from alerts.models import AlertChannel, AlertRule
from tokonomics.api_common import InSchema, ObjectId, field_decimal_string, not_null, plain_text

ChannelName = Annotated[str, plain_text(min_length=1, max_length=100)]
ChannelUrl = Annotated[str, plain_text(max_length=500)]
EmailAddress = Annotated[str, plain_text(min_length=3, max_length=254)]
Emails = Annotated[list[EmailAddress], Field(max_length=50)]
Secret = Annotated[str, plain_text(max_length=200)]
Scope = Literal["account", "tenant", "feature", "key", "session"]
Match = Annotated[str, plain_text(min_length=1, max_length=200)]
WindowMinutes = Annotated[int, Field(ge=1, le=1440)]
Multiplier = Annotated[Decimal, Field(gt=1, max_digits=6, decimal_places=2)]
FloorUsd = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=6)]
ChannelIds = Annotated[list[ObjectId], Field(max_length=50)]
# SUBSCRIBABLE_TYPES of alerts/models.py, spelled out for the schema (a test keeps the two the same).
EventType = Literal[
    "budget.threshold_crossed", "budget.exhausted", "budget.resolved", "budget.forecast", "spend.burn_rate",
    "plan.request_limit", "key.created", "key.revoked", "key.rotated", "key.expiring", "rate_limit.exceeded",
    "budget.denied", "plan.limit_approaching", "budget.downgraded",
]
EventTypes = Annotated[list[EventType], Field(max_length=20)]
EVENT_TYPES_HELP = ("The event types this channel is sent (CONTRACT §6); the test button's `test` always reaches it. "
                    "Default: the budget alerts (budget.*, spend.burn_rate, plan.request_limit).")
DecimalString = Annotated[str, Field(description="A decimal number, as a string.")]


class AlertChannelOut(Schema):
    id: int
    name: str
    kind: str
    url: str = Field(description="Where webhooks go. A Slack URL is write-only: shown masked (scheme://host/…last4).")
    emails: list[str]
    has_secret: bool = Field(description="Whether webhooks are signed. The secret itself is write-only.")
    enabled: bool = Field(description="A disabled channel is sent nothing.")
    event_types: list[str] = Field(description=EVENT_TYPES_HELP)
    created_at: datetime

    @staticmethod
    def resolve_has_secret(obj: AlertChannel) -> bool:
        return bool(obj.secret_encrypted)


class AlertChannelCreatedOut(AlertChannelOut):
    """Validate with `context={"generated_secret": …}`: a generated secret is returned by its creation only."""

    secret: str | None = Field(
        description="The webhook signing secret generated for this channel, shown in this response only: store it "
        "now. Null when you gave one or the channel is not a webhook."
    )

    @staticmethod
    def resolve_secret(obj: AlertChannel, context: dict[str, Any]) -> str | None:
        secret: str | None = context["generated_secret"]
        return secret


class AlertChannelIn(InSchema):
    name: ChannelName
    kind: Literal["webhook", "email", "slack"]
    url: ChannelUrl = Field(default="", description="For webhook and slack channels.")
    emails: Emails = Field(default=[], description="For email channels.")
    secret: Secret | None = Field(
        default=None,
        description="Webhook signing secret, whsec_ + base64. Write-only; generated (and returned once) when left out.",
    )
    event_types: EventTypes | None = Field(default=None, description=EVENT_TYPES_HELP)


class AlertChannelPatch(InSchema):
    """Only the fields sent change. The kind cannot change: create another channel instead."""

    name: ChannelName | SkipJsonSchema[None] = None
    url: ChannelUrl | SkipJsonSchema[None] = None
    emails: Emails | SkipJsonSchema[None] = None
    secret: Secret | SkipJsonSchema[None] = Field(default=None, description="A new signing secret. Write-only.")
    enabled: bool | SkipJsonSchema[None] = Field(default=None, description="False: send it nothing until true again.")
    event_types: EventTypes | SkipJsonSchema[None] = Field(default=None, description=EVENT_TYPES_HELP)

    reject_null = not_null("name", "url", "emails", "secret", "enabled", "event_types")


class AlertRuleOut(Schema):
    id: int
    kind: str
    scope: str
    match: str
    window_minutes: int
    multiplier: DecimalString
    floor_usd: DecimalString
    channel_ids: list[int] = Field(description="Alert channels; empty means every channel of the account.")
    enabled: bool = Field(description="A disabled rule is not evaluated.")
    created_at: datetime

    @staticmethod
    def resolve_multiplier(obj: AlertRule) -> str:
        return field_decimal_string(obj, "multiplier")

    @staticmethod
    def resolve_floor_usd(obj: AlertRule) -> str:
        return field_decimal_string(obj, "floor_usd")

    @staticmethod
    def resolve_channel_ids(obj: AlertRule) -> list[int]:
        return sorted(channel.pk for channel in obj.channels.all())


class AlertRuleIn(InSchema):
    kind: Literal["burn_rate"] = "burn_rate"
    scope: Scope
    match: Match = Field(default="*", description="A tenant, feature or key name, or '*' for each one.")
    window_minutes: WindowMinutes = 15
    multiplier: Multiplier = Field(
        default=Decimal(5), description="Alert when the window's spend exceeds this multiple of the usual."
    )
    floor_usd: FloorUsd = Field(default=Decimal(1), description="Spend in the window below this never alerts.")
    channel_ids: ChannelIds = []


class AlertRulePatch(InSchema):
    """Only the fields sent change; the rule is then validated whole."""

    scope: Scope | SkipJsonSchema[None] = None
    match: Match | SkipJsonSchema[None] = None
    window_minutes: WindowMinutes | SkipJsonSchema[None] = None
    multiplier: Multiplier | SkipJsonSchema[None] = None
    floor_usd: FloorUsd | SkipJsonSchema[None] = None
    channel_ids: ChannelIds | SkipJsonSchema[None] = None
    enabled: bool | SkipJsonSchema[None] = Field(default=None, description="False: stop evaluating it.")

    reject_null = not_null("scope", "match", "window_minutes", "multiplier", "floor_usd", "channel_ids", "enabled")

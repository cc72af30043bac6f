"""REST API shapes of keys and provider endpoints. Secrets go in, never out (bar a new key, once)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic.json_schema import SkipJsonSchema

from tokonomics.api_common import InSchema, Timestamp, not_null, plain_text
from tokonomics.validation import SLUG_PATTERN

from .models import MAX_ROUTE_CACHE_TTL_SECONDS, ApiKey, ProviderEndpoint

MAX_PER_MINUTE = 2_147_483_647  # PositiveIntegerField's ceiling

KeyName = Annotated[str, plain_text(min_length=1, max_length=100)]
Environment = Annotated[str, plain_text(min_length=1, max_length=60)]
ModelPattern = Annotated[str, plain_text(min_length=1, max_length=200)]
AllowedModels = Annotated[list[ModelPattern], Field(max_length=100)]
PerMinute = Annotated[int, Field(ge=1, le=MAX_PER_MINUTE)]
Slug = Annotated[str, plain_text(min_length=1, max_length=63, pattern=SLUG_PATTERN)]
BaseUrl = Annotated[str, plain_text(min_length=1, max_length=500)]
PricingProvider = Annotated[str, plain_text(max_length=40)]
Credential = Annotated[str, plain_text(max_length=4096)]
WireFormat = Literal["openai", "anthropic", "gemini", "azure-openai"]
DeploymentName = Annotated[str, plain_text(min_length=1, max_length=64, pattern=r"^[^/\x00]+$")]
DeploymentModel = Annotated[str, plain_text(min_length=1, max_length=200)]
Deployments = Annotated[dict[DeploymentName, DeploymentModel], Field(max_length=200)]
DEPLOYMENTS_HELP = "Azure OpenAI: deployment name → the model it serves, so calls to the deployment are priced."


class KeyOut(Schema):
    id: int
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it. The rest is never shown.")
    environment: str
    allowed_models: list[str] = Field(description="Glob patterns; empty allows every model.")
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool = Field(description="Neither revoked nor expired.")
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent: int | None
    created_at: datetime

    @staticmethod
    def resolve_active(obj: ApiKey) -> bool:
        return obj.is_active


class KeyCreatedOut(KeyOut):
    """Validate with `context={"plaintext": …}`: the plaintext exists only while the creating request runs."""

    key: str = Field(description="The plaintext key (mk_…), shown in this response only: store it now.")

    @staticmethod
    def resolve_key(obj: ApiKey, context: dict[str, Any]) -> str:
        plaintext: str = context["plaintext"]
        return plaintext


class KeyIn(InSchema):
    name: KeyName
    environment: Environment = "production"
    allowed_models: AllowedModels = []
    expires_at: Timestamp | None = None
    requests_per_minute: PerMinute | None = None
    tokens_per_minute: PerMinute | None = None
    max_concurrent: PerMinute | None = None


class KeyPatch(InSchema):
    """Only the fields sent change; null clears expires_at and the rate limits."""

    name: KeyName | SkipJsonSchema[None] = None
    environment: Environment | SkipJsonSchema[None] = None
    allowed_models: AllowedModels | SkipJsonSchema[None] = None
    expires_at: Timestamp | None = None
    requests_per_minute: PerMinute | None = None
    tokens_per_minute: PerMinute | None = None
    max_concurrent: PerMinute | None = None

    reject_null = not_null("name", "environment", "allowed_models")


class ProviderOut(Schema):
    id: int
    slug: str = Field(description="Calls to /proxy/{slug}/… go to this endpoint.")
    wire_format: str
    base_url: str
    pricing_provider: str
    deployments: dict[str, str] = Field(description=DEPLOYMENTS_HELP)
    has_credential: bool = Field(description="Whether a credential is stored. The credential itself is write-only.")
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_has_credential(obj: ProviderEndpoint) -> bool:
        return obj.has_credential


class ProviderIn(InSchema):
    slug: Slug = Field(description="A built-in kind (openai, anthropic, deepseek, …) or a name of your own.")
    wire_format: WireFormat | None = Field(default=None, description="Required for a slug that is not built in.")
    base_url: BaseUrl | None = Field(default=None, description="Required for a slug that is not built in.")
    pricing_provider: PricingProvider | None = Field(
        default=None, description="genai-prices provider id; empty to infer it from the URL and model."
    )
    deployments: Deployments | None = Field(default=None, description=DEPLOYMENTS_HELP)
    credential: Credential | None = Field(default=None, description="The provider's API key. Write-only.")


class ProviderPatch(InSchema):
    """Only the fields sent change. A credential of "" removes the stored one."""

    wire_format: WireFormat | SkipJsonSchema[None] = None
    base_url: BaseUrl | SkipJsonSchema[None] = None
    pricing_provider: PricingProvider | SkipJsonSchema[None] = None
    deployments: Deployments | SkipJsonSchema[None] = Field(default=None, description=DEPLOYMENTS_HELP)
    credential: Credential | SkipJsonSchema[None] = Field(default=None, description="Write-only.")

    reject_null = not_null("wire_format", "base_url", "pricing_provider", "deployments", "credential")


RouteName = Annotated[str, plain_text(min_length=1, max_length=200)]
Strategy = Literal["fallback", "weighted", "lowest-cost", "lowest-latency"]
ROUTE_NAME_HELP = "The model name clients send (`support-default`, or a real model such as `gpt-4o-mini`)."
STRATEGY_HELP = ("fallback: in order · weighted: drawn by weight, the rest as fallbacks · lowest-cost: cheapest "
                 "by the call's estimate first · lowest-latency: lowest recent median time to answer first")


class RouteTargetSchema(Schema):
    endpoint: Slug = Field(description="The slug of one of the account's provider endpoints.")
    model: DeploymentModel
    weight: Annotated[int, Field(ge=0, le=1000)] = 1
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] | None = Field(
        default=None, description="How long to wait for this target's answer to start; none: the route's deadline.")


RouteTargets = Annotated[list[RouteTargetSchema], Field(min_length=1, max_length=10)]


class RouteOut(Schema):
    id: int
    name: str = Field(description=ROUTE_NAME_HELP)
    strategy: str = Field(description=STRATEGY_HELP)
    targets: list[RouteTargetSchema]
    max_attempts: int
    deadline_seconds: float
    retries: int
    backoff_ms: int
    cache_ttl_seconds: int | None = Field(description="The response cache's TTL for this route's calls; null: the "
                                                      "account's.")
    cache_nonzero_temperature: bool | None = Field(description="Cache this route's sampled calls too; null: as the "
                                                             "account says.")
    created_at: datetime
    updated_at: datetime


class RouteIn(InSchema):
    name: RouteName = Field(description=ROUTE_NAME_HELP)
    strategy: Strategy = Field(default="fallback", description=STRATEGY_HELP)
    targets: RouteTargets
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    deadline_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    backoff_ms: Annotated[int, Field(ge=0, le=60_000)] = 200
    cache_ttl_seconds: Annotated[int, Field(ge=1, le=MAX_ROUTE_CACHE_TTL_SECONDS)] | None = None
    cache_nonzero_temperature: bool | None = None


class RoutePatch(InSchema):
    """Only the fields sent change."""

    name: RouteName | SkipJsonSchema[None] = None
    strategy: Strategy | SkipJsonSchema[None] = None
    targets: RouteTargets | SkipJsonSchema[None] = None
    max_attempts: Annotated[int, Field(ge=1, le=10)] | SkipJsonSchema[None] = None
    deadline_seconds: Annotated[float, Field(gt=0, le=600)] | SkipJsonSchema[None] = None
    retries: Annotated[int, Field(ge=0, le=10)] | SkipJsonSchema[None] = None
    backoff_ms: Annotated[int, Field(ge=0, le=60_000)] | SkipJsonSchema[None] = None
    # null sets them back to the account's
    cache_ttl_seconds: Annotated[int, Field(ge=1, le=MAX_ROUTE_CACHE_TTL_SECONDS)] | None = None
    cache_nonzero_temperature: bool | None = None

    reject_null = not_null("name", "strategy", "targets", "max_attempts", "deadline_seconds", "retries", "backoff_ms")
# --- guardrail policies ----------------------------------------------------------------------------------

GUARDRAIL_SPEC_HELP = ("The policy: `pii`, `rules`, `system_prompt`, `injection` (CONTRACT.md, Guardrails). "
                       "Validated as a whole; every problem is listed in the 422.")


class GuardrailPolicyOut(Schema):
    key_id: int | None = Field(description="The key the policy is its own; null for the account's default.")
    key_name: str | None
    spec: dict[str, Any]
    updated_at: datetime

    @staticmethod
    def resolve_key_name(obj: Any) -> str | None:
        return obj.key.name if obj.key is not None else None


class KeyGuardrailsOut(Schema):
    own: dict[str, Any] | None = Field(description="The key's own policy; null when it has none.")
    effective: dict[str, Any] | None = Field(
        description="What the proxy applies: the account's default merged with the key's own, field by field.")


class GuardrailPolicyIn(InSchema):
    spec: dict[str, Any] = Field(description=GUARDRAIL_SPEC_HELP)


class GuardrailTryIn(InSchema):
    text: Annotated[str, Field(max_length=100_000)]
    scope: Literal["input", "output"] = "input"
    spec: dict[str, Any] | None = Field(
        default=None, description="A policy to try; left out: the key's effective policy, or the account default.")
    key_id: int | None = None


class GuardrailHitOut(Schema):
    rule: str
    action: str
    count: int


class GuardrailTryOut(Schema):
    result: str = Field(description="The text as the provider (input) or the client (output) would get it.")
    blocked_by: str | None
    hits: list[GuardrailHitOut]
    warned: list[str]

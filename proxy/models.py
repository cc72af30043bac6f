from __future__ import annotations

import fnmatch
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from tokonomics.crypto import decrypt_secret, encrypt_secret, secret_context
from tokonomics.validation import SLUG_VALIDATOR

from .catalog import WIRE_FORMATS

MAX_DEPLOYMENTS = 200
MAX_DEPLOYMENT_NAME = 64  # Azure's own limit on a deployment name
MAX_DEPLOYMENT_MODEL = 200  # the usage record's model field


def deployments_problem(deployments: object) -> str | None:
    """Why a deployment → model map cannot be stored, None when it can: plain names, bounded."""
    if not isinstance(deployments, dict):
        return "A mapping of deployment names to model names."
    if len(deployments) > MAX_DEPLOYMENTS:
        return f"At most {MAX_DEPLOYMENTS} deployments."
    for name, model in deployments.items():
        if not isinstance(name, str) or not isinstance(model, str):
            return "Deployment and model names are text."
        if not 0 < len(name) <= MAX_DEPLOYMENT_NAME or not name.isprintable() or "/" in name:
            return f"Deployment {name[:MAX_DEPLOYMENT_NAME]!r}: 1–{MAX_DEPLOYMENT_NAME} printable characters, no '/'."
        if not 0 < len(model) <= MAX_DEPLOYMENT_MODEL or not model.isprintable():
            return f"Model of {name!r}: 1–{MAX_DEPLOYMENT_MODEL} printable characters."
    return None


class ApiKey(models.Model):
    """A Tokonomics key. Only its SHA-256 hash and a short visible prefix are stored."""

    account = models.ForeignKey("billing.Account", on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise the key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # After a rotation the old secret keeps working until previous_valid_until (a grace period the person
    # rotating chose), so clients can move over without an outage; a later rotation replaces it.
    previous_key_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    environment = models.CharField(max_length=60, default="production")
    allowed_models = models.JSONField(
        default=list, blank=True, help_text='Glob patterns such as "gpt-4o-mini" or "claude-*"; empty allows all.'
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Who created it in the web app: a member may revoke only their own keys. None for keys from applyconfig,
    # the admin or the REST API (account tokens, not people): only admins and owners revoke those.
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, editable=False,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="apikey_unique_name")]
        ordering = ["account", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or any(fnmatch.fnmatchcase(model, p) for p in self.allowed_models)

    def clean(self) -> None:
        if not isinstance(self.allowed_models, list) or not all(isinstance(p, str) for p in self.allowed_models):
            raise ValidationError({"allowed_models": "A list of model names or glob patterns."})


class ProviderEndpoint(models.Model):
    """Where calls to /proxy/{slug}/… go, and the account's credential for it (encrypted)."""

    account = models.ForeignKey("billing.Account", on_delete=models.CASCADE, related_name="provider_endpoints")
    slug = models.CharField(max_length=63, validators=[SLUG_VALIDATOR])
    wire_format = models.CharField(max_length=20, choices=[(w, w) for w in WIRE_FORMATS])
    base_url = models.URLField(max_length=500)
    pricing_provider = models.CharField(
        max_length=40, blank=True, help_text="genai-prices provider id; empty to infer from the URL and model."
    )
    deployments = models.JSONField(
        default=dict, blank=True,
        help_text="Deployment name → the model it serves (Azure OpenAI), so calls to a deployment are priced.",
    )
    credential_encrypted = models.TextField(blank=True, editable=False)
    # What the credential's ciphertext is bound to (tokonomics/crypto.py); set before the row has a pk.
    secret_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "slug"], name="endpoint_unique_slug")]
        ordering = ["account", "slug"]

    def __str__(self) -> str:
        return f"{self.account.slug}/{self.slug}"

    def clean(self) -> None:
        problem = deployments_problem(self.deployments)
        if problem:
            raise ValidationError({"deployments": problem})

    def set_credential(self, plaintext: str) -> None:
        context = secret_context(self, "credential_encrypted")
        self.credential_encrypted = encrypt_secret(plaintext, context=context) if plaintext else ""

    def get_credential(self) -> str:
        context = secret_context(self, "credential_encrypted")
        return decrypt_secret(self.credential_encrypted, context=context) if self.credential_encrypted else ""

    @property
    def has_credential(self) -> bool:
        return bool(self.credential_encrypted)


ROUTE_STRATEGIES = ("fallback", "weighted", "lowest-cost", "lowest-latency")
MAX_ROUTE_TARGETS = 10
MAX_ROUTE_ATTEMPTS = 10
MAX_ROUTE_DEADLINE_SECONDS = 600.0
MAX_TARGET_WEIGHT = 1000
ROUTE_TARGET_FIELDS = frozenset({"endpoint", "model", "weight", "timeout_seconds"})


def route_targets_problem(targets: object) -> str | None:
    """Why a route's target list cannot be stored, None when it can: 1–10 of {endpoint, model, weight?,
    timeout_seconds?}, plain bounded names (whether the endpoint exists is the service's to check)."""
    if not isinstance(targets, list) or not 0 < len(targets) <= MAX_ROUTE_TARGETS:
        return f"A list of 1–{MAX_ROUTE_TARGETS} targets."
    for n, target in enumerate(targets, 1):
        if not isinstance(target, dict) or set(target) - ROUTE_TARGET_FIELDS:
            return f"Target {n}: an object with endpoint, model, and optionally weight and timeout_seconds."
        endpoint, model = target.get("endpoint"), target.get("model")
        if not isinstance(endpoint, str) or not 0 < len(endpoint) <= 63:
            return f"Target {n}: the slug of one of the account's provider endpoints."
        if not isinstance(model, str) or not 0 < len(model) <= MAX_DEPLOYMENT_MODEL or not model.isprintable():
            return f"Target {n}: a model name of 1–{MAX_DEPLOYMENT_MODEL} printable characters."
        weight = target.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_TARGET_WEIGHT:
            return f"Target {n}: a weight from 0 to {MAX_TARGET_WEIGHT}."
        timeout = target.get("timeout_seconds")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                    or not 0 < timeout <= MAX_ROUTE_DEADLINE_SECONDS):
            return f"Target {n}: a timeout of up to {MAX_ROUTE_DEADLINE_SECONDS:.0f} seconds, or none."
    return None


# A route's cache TTL at most: the account's own bound (billing.models.accounts.MAX_CACHE_TTL_SECONDS), a week.
MAX_ROUTE_CACHE_TTL_SECONDS = 7 * 24 * 3600


class Route(models.Model):
    """A model name clients call (`support-default`, or a real one such as `gpt-4o-mini`) and the targets
    (an endpoint of the account and a model) that serve it, chosen by `strategy`, with retries and fallbacks
    (docs/CONTRACT.md, "Routes and cache")."""

    account = models.ForeignKey("billing.Account", on_delete=models.CASCADE, related_name="routes")
    name = models.CharField(max_length=MAX_DEPLOYMENT_MODEL, help_text="The model name clients send.")
    strategy = models.CharField(max_length=20, choices=[(s, s) for s in ROUTE_STRATEGIES], default="fallback")
    targets = models.JSONField(
        default=list, help_text='In order: [{"endpoint": "openai", "model": "gpt-4o-mini", "weight": 1, '
                                '"timeout_seconds": 30}, …]',
    )
    max_attempts = models.PositiveSmallIntegerField(default=3, help_text="Upstream attempts per call, retries "
                                                    "and fallbacks together.")
    deadline_seconds = models.FloatField(default=60.0, help_text="No attempt starts, and no retry waits, past this "
                                         "many seconds after the call arrived.")
    retries = models.PositiveSmallIntegerField(default=1, help_text="Retries of the same target (429, 5xx, "
                                               "timeouts) before falling back to the next.")
    backoff_ms = models.PositiveIntegerField(default=200, help_text="The first retry's backoff ceiling; doubles "
                                             "each retry, with full jitter, unless Retry-After says otherwise.")
    # The response cache for this route's calls (proxy/response_cache.py), over the account's; empty: the account's.
    cache_ttl_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="How long the route's answers are kept in the response cache; empty: the "
                                         "account's TTL.",
    )
    cache_nonzero_temperature = models.BooleanField(
        null=True, blank=True, help_text="Cache the route's sampled calls (temperature above 0) too; empty: as the "
                                         "account says.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="route_unique_name")]
        ordering = ["account", "name"]

    def __str__(self) -> str:
        return f"{self.account_id}/{self.name}"

    def clean(self) -> None:
        problems = {}
        if problem := route_targets_problem(self.targets):
            problems["targets"] = problem
        if not 0 < len(self.name) <= MAX_DEPLOYMENT_MODEL or not self.name.isprintable():
            problems["name"] = f"1–{MAX_DEPLOYMENT_MODEL} printable characters."
        if not 1 <= self.max_attempts <= MAX_ROUTE_ATTEMPTS:
            problems["max_attempts"] = f"From 1 to {MAX_ROUTE_ATTEMPTS}."
        if not 0 < self.deadline_seconds <= MAX_ROUTE_DEADLINE_SECONDS:
            problems["deadline_seconds"] = f"Up to {MAX_ROUTE_DEADLINE_SECONDS:.0f} seconds."
        if self.cache_ttl_seconds is not None and not 1 <= self.cache_ttl_seconds <= MAX_ROUTE_CACHE_TTL_SECONDS:
            problems["cache_ttl_seconds"] = f"From 1 to {MAX_ROUTE_CACHE_TTL_SECONDS} seconds, or empty."
        if self.retries > MAX_ROUTE_ATTEMPTS:
            problems["retries"] = f"At most {MAX_ROUTE_ATTEMPTS}."
        if self.backoff_ms > 60_000:
            problems["backoff_ms"] = "At most 60000."
        if problems:
            raise ValidationError(problems)


class GuardrailPolicy(models.Model):
    """A guardrail policy (proxy/guardrails/policy.py's spec): the account-wide default (`key` empty) or one
    key's own, merged over the default field by field. The proxy reads both when it loads a key."""

    account = models.ForeignKey("billing.Account", on_delete=models.CASCADE, related_name="guardrail_policies")
    key = models.OneToOneField(ApiKey, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="guardrail_policy")
    spec = models.JSONField(default=dict, help_text="The policy, as documented in CONTRACT.md (guardrails).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One default per account (a NULL key is distinct to a plain unique constraint).
            models.UniqueConstraint(fields=["account"], condition=models.Q(key__isnull=True),
                                    name="guardrailpolicy_one_default"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"guardrails of {self.key.name if self.key is not None else 'the account'}"

    @property
    def target(self) -> str:
        """What the audit log names: the key's name, or "default"."""
        return f"key:{self.key.name}" if self.key is not None else "default"

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

"""Single sign-on (OpenID Connect) per account. Imported at the end of billing/models.py, so Django finds
the model there."""

from __future__ import annotations

import uuid

from django.db import models

from tokonomics.crypto import decrypt_secret, encrypt_secret, secret_context


class SsoConfig(models.Model):
    """How an Enterprise account's people sign in through its identity provider."""

    class DefaultRole(models.TextChoices):
        # Never owner: the identity provider must not be able to mint owners.
        ADMIN = "admin"
        MEMBER = "member"
        VIEWER = "viewer"

    account = models.OneToOneField("billing.Account", on_delete=models.CASCADE, related_name="sso_config")
    enabled = models.BooleanField(default=True)
    issuer = models.URLField(max_length=300, help_text="The provider's issuer URL, as in its discovery document.")
    client_id = models.CharField(max_length=200)
    # Named like every other encrypted secret, so billing.audit.snapshot leaves it out of the log.
    secret_encrypted = models.TextField(blank=True, editable=False, help_text="The client secret, encrypted.")
    # What the secret's ciphertext is bound to (tokonomics/crypto.py); set before the row has a pk.
    secret_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    allowed_domains = models.JSONField(
        default=list, help_text="Lower-case email domains that sign in here; each belongs to one account only."
    )
    default_role = models.CharField(max_length=10, choices=DefaultRole.choices, default=DefaultRole.VIEWER)
    password_login_disabled = models.BooleanField(
        default=False, help_text="People of these domains who hold a seat here must sign in through SSO."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"SSO for {self.account_id} via {self.issuer}"

    def set_client_secret(self, plaintext: str) -> None:
        self.secret_encrypted = encrypt_secret(plaintext, context=secret_context(self, "secret_encrypted"))

    def client_secret(self) -> str:
        context = secret_context(self, "secret_encrypted")
        return decrypt_secret(self.secret_encrypted, context=context) if self.secret_encrypted else ""

    @property
    def active(self) -> bool:
        return self.enabled and self.account.plan.sso

    def allows_email(self, email: str) -> bool:
        return email.rpartition("@")[2].lower() in self.allowed_domains

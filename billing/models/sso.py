"""Single sign-on (OpenID Connect) per account."""

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

    secret_encrypted = models.TextField(blank=True, editable=False, help_text="The client secret, encrypted.")
    # What the secret's ciphertext is bound to (tokonomics/crypto.py); set before the row has a pk.
    secret_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
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
        """Whether the email's domain is one this account proved it controls."""
        domain = email.rpartition("@")[2].lower()
        return bool(domain) and self.domains.filter(domain=domain, status=SsoDomain.Status.VERIFIED).exists()

    def verified_domains(self) -> list[str]:
        return sorted(self.domains.filter(status=SsoDomain.Status.VERIFIED).values_list("domain", flat=True))


class SsoDomain(models.Model):
    """An email domain an account claims for its SSO. It signs people in only once verified: approved by
    the operator in the admin, or confirmed through a link mailed to an address at the domain. Pending
    claims of one domain by several accounts may coexist (so nobody can squat a domain by claiming it
    first); the database lets only one of them be verified."""

    class Status(models.TextChoices):
        PENDING = "pending"
        VERIFIED = "verified"

    config = models.ForeignKey(SsoConfig, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, help_text="Lower-case, e.g. acme.com")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    verified_by = models.CharField(max_length=254, blank=True,
                                   help_text="The operator who approved it, or the address that confirmed it.")
    verified_at = models.DateTimeField(null=True, blank=True)
    # The one confirmation link that may still be used; a new mail replaces it, a use clears it.
    confirmation_nonce = models.CharField(max_length=64, blank=True, editable=False)
    confirmation_sent_to = models.EmailField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["config", "domain"], name="sso_domain_once_per_config"),
            models.UniqueConstraint(fields=["domain"], condition=models.Q(status="verified"),
                                    name="sso_domain_verified_for_one_account"),
        ]

    def __str__(self) -> str:
        return f"{self.domain} ({self.status})"

"""The REST API's credentials."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone


class ManagementToken(models.Model):
    """An account-scoped token for /api/v1/. Only its SHA-256 hash and a short visible prefix are stored."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin (read and write)"
        VIEWER = "viewer", "Viewer (read only)"

    account = models.ForeignKey("billing.Account", on_delete=models.CASCADE, related_name="management_tokens")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ADMIN)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise the token.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.role})"

    def is_active_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def is_active(self) -> bool:
        return self.is_active_at(timezone.now())

    @property
    def read_only(self) -> bool:
        return self.role == self.Role.VIEWER

"""The audit log's rows."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tokonomics.audit import ActorKind

from .accounts import Account


class AuditEntry(models.Model):
    """Who changed what in an account, with the values before and after (secrets never included)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="audit_entries")
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices, default=ActorKind.USER)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_token = models.ForeignKey("billing.ManagementToken", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="audit_entries")
    actor_label = models.CharField(max_length=200, help_text="Who, kept even if the user or token is deleted.")
    action = models.CharField(max_length=60)
    target = models.CharField(max_length=200)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "-created_at"], name="audit_account_time")]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target}"

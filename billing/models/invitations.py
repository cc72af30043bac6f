"""Invitations to take a seat. Imported at the end of billing/models.py, so Django finds the model there."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Invitation(models.Model):
    """A link that gives one person a seat, once. Only the SHA-256 hash of its token is stored: the link is
    shown to the inviter and mailed to the invitee, never kept."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        REVOKED = "revoked"  # withdrawn, or replaced by a newer invitation to the same address

    account = models.ForeignKey("billing.Account", on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(help_text="Lower case: the address the seat is for.")
    # One of Seat.Role, checked by billing.accounts.team.
    role = models.CharField(max_length=10)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    inviter = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    inviter_label = models.CharField(max_length=200, help_text="Who invited, kept even if the user is deleted.")
    # A default, not auto_now_add: the data migration keeps the time the old log entry recorded.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # Links sent before invitations were rows are signed and name the audit entry that recorded them
    # (migration 0013); they last INVITATION_MAX_AGE, so every such row is expired a week after the release.
    legacy_entry_id = models.PositiveBigIntegerField(null=True, blank=True, unique=True, editable=False)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["account", "status", "expires_at"], name="invitation_account_status")]
        constraints = [
            # Re-inviting revokes the earlier invitation first: one open invitation per address and account.
            models.UniqueConstraint(fields=["account", "email"], condition=Q(status="pending"),
                                    name="invitation_one_pending_per_email"),
            models.CheckConstraint(condition=Q(status="accepted", accepted_at__isnull=False)
                                   | (~Q(status="accepted") & Q(accepted_at__isnull=True)),
                                   name="invitation_accepted_iff_accepted_at"),
            models.CheckConstraint(condition=Q(status="revoked", revoked_at__isnull=False)
                                   | (~Q(status="revoked") & Q(revoked_at__isnull=True)),
                                   name="invitation_revoked_iff_revoked_at"),
        ]

    def __str__(self) -> str:
        return f"{self.email} @ {self.account_id} ({self.role}, {self.status})"

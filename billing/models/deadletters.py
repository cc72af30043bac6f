"""Usage events the ledger could not store."""

from __future__ import annotations

from django.db import models


class UsageDeadLetter(models.Model):
    """One usage event that failed on its own (malformed, a wrong type, an account that is gone), set
    aside so that it never holds up other events; listed in the admin and replayed once repaired."""

    raw = models.TextField(help_text="The event as read (undecodable bytes and NUL escaped); edit it to repair it.")
    stream = models.CharField(max_length=100, blank=True,
                              help_text="The Redis stream it came from; empty for a proxy's in-memory fallback.")
    entry_id = models.CharField(max_length=40, blank=True)
    account = models.ForeignKey("billing.Account", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="usage_dead_letters")
    request_id = models.CharField(max_length=40, blank=True)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A batch dead-lettered twice (its ack was lost) keeps one row per stream entry.
            models.UniqueConstraint(fields=["stream", "entry_id"], condition=~models.Q(entry_id=""),
                                    name="usagedeadletter_unique_entry"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id or self.entry_id or self.pk}: {self.reason[:80]}"

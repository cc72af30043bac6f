"""The audit log: every change made in the web app, with who, before and after."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models

from billing.models import Account, AuditEntry

# Never copied into the log, whatever the model (secret_id only binds ciphertexts: noise in a log).
SECRET_FIELDS = frozenset({"key_hash", "credential_encrypted", "secret_encrypted", "url_encrypted", "secret_id",
                           "password"})


def snapshot(obj: models.Model | None, fields: list[str] | None = None) -> dict[str, Any]:
    if obj is None:
        return {}
    names = fields or [f.name for f in obj._meta.concrete_fields]
    out = {}
    for name in names:
        if name in SECRET_FIELDS or name == "id":
            continue
        value = getattr(obj, name, None)
        if isinstance(value, (models.Model, Decimal)):
            value = str(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        out[name] = value
    return out


def audit_record(
    *, account: Account, actor: Any, action: str, target: str, before: dict | None = None, after: dict | None = None
) -> AuditEntry:
    changed_before, changed_after = before or {}, after or {}
    if before and after:  # keep only what changed
        keys = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        changed_before = {k: before.get(k) for k in keys}
        changed_after = {k: after.get(k) for k in keys}
    return AuditEntry.objects.create(
        account=account,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_label=getattr(actor, "email", "") or str(actor),
        action=action,
        target=target[:200],
        before=changed_before,
        after=changed_after,
    )

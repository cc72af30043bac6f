"""The audit log's vocabulary: who acted (an `Actor`), what an object looked like (`snapshot`), and the
one function that records a change (`audit_record`).

It lives here, below the apps, so that proxy's services audit their own writes without importing billing:
the entry is created through the account's `audit_entries` relation (billing's AuditEntry.account), which
every account row carries whichever app holds the account in hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Protocol

from django.core.exceptions import FieldDoesNotExist
from django.db import models

# Never copied into the log, whatever the model (secret_id only binds ciphertexts: noise in a log).
SECRET_FIELDS = frozenset({"key_hash", "previous_key_hash", "token_hash", "credential_encrypted", "secret_encrypted",
                           "url_encrypted", "secret_id", "password"})
# The entry has its own time and actor; copying the row's would make the same change look different by channel.
# A key rotation's entry states how long the old secret lives (old_secret_valid_until) in words of its own.
BOOKKEEPING_FIELDS = frozenset({"id", "created_at", "updated_at", "created_by", "last_used_at",
                                "previous_valid_until"})
LABEL_LENGTH = 200

if TYPE_CHECKING:  # billing.models imports this module while the user model is still loading
    from django.contrib.auth.models import User


class ActorKind(models.TextChoices):
    USER = "user", "Person (web app)"
    TOKEN = "token", "Management token (REST API)"  # noqa: S105 -- a kind of actor, not a secret
    CONFIG = "config", "Config file (applyconfig)"
    SYSTEM = "system", "System (a command or a background job)"


@dataclass(frozen=True)
class Actor:
    """Who made a change. `label` names them in the log and outlives them; `user`/`token_id` link the row."""

    kind: ActorKind
    label: str
    user: User | None = None
    token_id: int | None = None

    @classmethod
    def of_user(cls, user: User) -> Actor:
        return cls(ActorKind.USER, getattr(user, "email", "") or str(user), user=user)

    @classmethod
    def of_token(cls, *, token_id: int, name: str, prefix: str) -> Actor:
        """A management token, by name and visible prefix (the prefix is shown in the web app: not a secret)."""
        return cls(ActorKind.TOKEN, f"{name} ({prefix}…)", token_id=token_id)

    @classmethod
    def of_config(cls, path: str) -> Actor:
        """The config file applied, by file name: where it was read from is the operator's business."""
        return cls(ActorKind.CONFIG, f"config:{PurePath(path).name}")

    @classmethod
    def of_system(cls, name: str) -> Actor:
        return cls(ActorKind.SYSTEM, name)


def actor_of(who: Actor | User | str) -> Actor:
    """Callers that only ever act for a person, or a named command, may pass that instead of an Actor."""
    if isinstance(who, Actor):
        return who
    if isinstance(who, str):
        return Actor.of_system(who)
    return Actor.of_user(who)


def snapshot(obj: models.Model | None, fields: list[str] | None = None) -> dict[str, Any]:
    """The row's audited values, JSON-ready. Secrets and bookkeeping are left out unless named in `fields`
    (secrets: never)."""
    if obj is None:
        return {}
    names = fields or [f.name for f in obj._meta.concrete_fields if f.name not in BOOKKEEPING_FIELDS]
    out = {}
    for name in names:
        if name in SECRET_FIELDS or name == "id":
            continue
        value = getattr(obj, name, None)
        if isinstance(value, Decimal):
            value = _decimal_text(obj, name, value)
        elif isinstance(value, models.Model):
            value = str(value)
        elif value is not None and hasattr(value, "isoformat"):
            value = value.isoformat()
        out[name] = value
    return out


def _decimal_text(obj: models.Model, name: str, value: Decimal) -> str:
    # With the field's places, as the database returns it: "500" typed in a form and 500.000000 read back from
    # a row are the same value and must read the same in the log.
    try:
        field = obj._meta.get_field(name)
    except FieldDoesNotExist:
        return str(value)
    places = getattr(field, "decimal_places", None)
    return str(value.quantize(Decimal(1).scaleb(-places))) if isinstance(places, int) else str(value)


class AuditedAccount(Protocol):
    """An account row: what audit_record needs of it (billing's Account, seen from below)."""

    audit_entries: Any


def audit_record(
    *,
    account: AuditedAccount,
    actor: Actor | User | str,
    action: str,
    target: str,
    before: dict | None = None,
    after: dict | None = None,
) -> Any:
    """Record one change. Given both `before` and `after`, only the fields that differ are kept. Call it inside
    the write's transaction, so a change and its entry commit or roll back together."""
    who = actor_of(actor)
    changed_before, changed_after = before or {}, after or {}
    if before and after:
        keys = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        changed_before = {k: before.get(k) for k in keys}
        changed_after = {k: after.get(k) for k in keys}
    user = who.user if getattr(who.user, "is_authenticated", False) else None
    return account.audit_entries.create(
        actor=user,
        actor_kind=who.kind,
        actor_token_id=who.token_id,
        actor_label=who.label[:LABEL_LENGTH],
        action=action,
        target=target[:LABEL_LENGTH],
        before=changed_before,
        after=changed_after,
    )

"""Management tokens for the REST API: `mt_` + URL-safe random characters, stored as a SHA-256 hash;
created, looked up and touched here.

Same reasoning as proxy/keys.py: 256 random bits need no slow KDF, and every API request hashes one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import Account, ManagementToken
from tokonomics.audit import Actor, audit_record, snapshot
from tokonomics.validation import validated_save

TOKEN_PREFIX = "mt_"  # noqa: S105 -- the visible prefix of every token, not a secret
TOKEN_PATTERN = re.compile(r"^mt_[A-Za-z0-9_-]{32,}$")
VISIBLE_PREFIX_LENGTH = 11  # "mt_" + 8 characters
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_well_formed(token: str) -> bool:
    return TOKEN_PATTERN.match(token) is not None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def visible_prefix(token: str) -> str:
    return token[:VISIBLE_PREFIX_LENGTH]


TOKEN_AUDIT_FIELDS = ["name", "prefix", "role", "expires_at"]


def management_token_create(
    *, account: Account, actor: Actor, name: str, read_only: bool = False, expires_at: datetime | None = None
) -> tuple[ManagementToken, str]:
    """A new token and its plaintext, which is not stored: show it once. A token can change the account
    through the REST API, so its creation is in the account's log (its visible prefix, never its hash)."""
    plaintext = generate_token()
    token = ManagementToken(
        account=account,
        name=name,
        role=ManagementToken.Role.VIEWER if read_only else ManagementToken.Role.ADMIN,
        token_hash=hash_token(plaintext),
        prefix=visible_prefix(plaintext),
        expires_at=expires_at,
    )
    with transaction.atomic():
        validated_save(token)
        audit_record(account=account, actor=actor, action="management_token.created",
                     target=f"{token.name} ({token.prefix}…)", after=snapshot(token, TOKEN_AUDIT_FIELDS))
    return token, plaintext


def management_token_touch(*, token: ManagementToken) -> None:
    """Record that the token was used, writing at most once a minute per token."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < TOKEN_TOUCH_INTERVAL:
        return
    # The filter makes concurrent requests agree: only one of them writes.
    ManagementToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOKEN_TOUCH_INTERVAL)
    ).update(last_used_at=now)
    token.last_used_at = now


def management_token_get_active(*, plaintext: str) -> ManagementToken | None:
    """The live (not revoked, not expired) token with this plaintext, its account loaded, or None."""
    if not is_well_formed(plaintext):
        return None
    token = (
        ManagementToken.objects.select_related("account", "account__plan")
        .filter(token_hash=hash_token(plaintext))
        .first()
    )
    if token is None or not token.is_active_at(timezone.now()):
        return None
    return token


def management_token_revoke(*, account: Account, actor: Actor, token: ManagementToken) -> ManagementToken:
    """Revoke a token: the API refuses it from the next request. Revoking a revoked token changes (and logs)
    nothing."""
    if token.account_id != account.pk:
        raise ValueError(f"{token!r} is not in account {account.slug!r}")
    with transaction.atomic():
        # The filter makes a concurrent second revocation a no-op instead of moving revoked_at.
        live = ManagementToken.objects.filter(pk=token.pk, revoked_at__isnull=True)
        revoked = live.update(revoked_at=timezone.now())
        before = snapshot(token, ["revoked_at"])
        token.refresh_from_db()
        if revoked:
            # Named fields only: the row's token_hash must never reach the log.
            audit_record(account=account, actor=actor, action="management_token.revoked",
                         target=f"{token.name} ({token.prefix}…)", before=before, after=snapshot(token, ["revoked_at"]))
    return token

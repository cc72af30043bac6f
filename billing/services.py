"""Write-side actions of billing: management tokens and budgets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alerts.selectors import alert_channels_by_id
from billing.models import Account, Budget
from billing.models_tokens import ManagementToken
from billing.tokens import generate_token, hash_token, visible_prefix
from tokonomics.validation import ensure_unique, validated_save

TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
BUDGET_FIELDS = frozenset({"scope", "match", "period", "limit_usd", "hard", "alert_at", "channel_ids"})


def management_token_create(
    *, account: Account, name: str, read_only: bool = False, expires_at: datetime | None = None
) -> tuple[ManagementToken, str]:
    """A new token and its plaintext, which is not stored: show it once."""
    plaintext = generate_token()
    token = ManagementToken(
        account=account,
        name=name,
        role=ManagementToken.Role.VIEWER if read_only else ManagementToken.Role.ADMIN,
        token_hash=hash_token(plaintext),
        prefix=visible_prefix(plaintext),
        expires_at=expires_at,
    )
    validated_save(token)
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


def _budget_save(budget: Budget, channel_ids: Sequence[int] | None) -> Budget:
    budget.alert_at = sorted(set(budget.alert_at))
    budget.full_clean(validate_unique=False, validate_constraints=False)
    if budget.scope == Budget.Scope.KEY and budget.match != "*" and not budget.account.api_keys.filter(
        name=budget.match
    ).exists():
        raise ValidationError({"match": f"no key named {budget.match!r} in this account (or use '*')"})
    target = f"{budget.scope} {budget.match!r}" if budget.match else budget.scope
    ensure_unique(
        Budget.objects.filter(account=budget.account, scope=budget.scope, match=budget.match, period=budget.period),
        instance=budget,
        field="match",
        message=f"this account already has a budget on {target} ({budget.period}); change that one instead",
    )
    channels = None if channel_ids is None else alert_channels_by_id(account=budget.account, channel_ids=channel_ids)
    with transaction.atomic():
        budget.save()
        if channels is not None:
            # No channels named means every channel of the account (CONTRACT §6), stored as none.
            budget.channels.set(channels)
    return budget


def budget_create(
    *,
    account: Account,
    scope: str,
    period: str,
    limit_usd: Decimal,
    match: str = "",
    hard: bool = True,
    alert_at: Sequence[int] = (50, 75, 90, 100),
    channel_ids: Sequence[int] = (),
) -> Budget:
    """A new budget, validated as applyconfig validates one. No `channel_ids`: alerts go to every channel."""
    budget = Budget(account=account, scope=scope, match=match, period=period, limit_usd=limit_usd, hard=hard)
    budget.alert_at = list(alert_at)
    return _budget_save(budget, channel_ids)


def budget_update(*, budget: Budget, changes: Mapping[str, Any]) -> Budget:
    """Apply a partial update (any of BUDGET_FIELDS); the result is validated whole."""
    unknown = set(changes) - BUDGET_FIELDS
    if unknown:
        raise ValueError(f"not budget fields: {sorted(unknown)}")
    for name, value in changes.items():
        if name != "channel_ids":
            setattr(budget, name, value)
    return _budget_save(budget, changes.get("channel_ids"))


def budget_delete(*, budget: Budget) -> None:
    budget.delete()

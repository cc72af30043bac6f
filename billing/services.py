"""Write-side actions of billing: accounts, seats and prices as a config file sets them, management tokens and
budgets. Each write records its audit entry in the same transaction."""

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
from billing.models import Account, Budget, Plan, PriceOverride, Seat
from billing.models_tokens import ManagementToken
from billing.tokens import generate_token, hash_token, visible_prefix
from tokonomics.audit import Actor, audit_record, snapshot
from tokonomics.validation import ensure_unique, validated_save

TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
BUDGET_FIELDS = frozenset({"scope", "match", "period", "limit_usd", "hard", "alert_at", "channel_ids"})
ACCOUNT_FIELDS = frozenset({"name", "plan", "timezone", "retention_days", "on_redis_unavailable",
                            "allow_unmetered_routes", "allow_unpriced_models", "brand_name", "brand_logo_url",
                            "brand_accent_color"})
PRICE_FIELDS = frozenset({"input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok"})


def account_create(*, actor: Actor, slug: str, name: str, plan: Plan, **fields: Any) -> Account:
    """A new account (any of ACCOUNT_FIELDS besides name and plan may be given)."""
    unknown = set(fields) - ACCOUNT_FIELDS
    if unknown:
        raise ValueError(f"not account fields: {sorted(unknown)}")
    account = Account(slug=slug, name=name, plan=plan, **fields)
    account.full_clean(validate_unique=False, validate_constraints=False)
    ensure_unique(Account.objects.filter(slug=slug), instance=account, field="slug",
                  message=f"an account {slug!r} already exists")
    with transaction.atomic():
        account.save()
        audit_record(account=account, actor=actor, action="account.created", target=slug,
                     after=snapshot(account, ["slug", "name", "plan", *fields]))
    return account


def account_update(
    *, account: Account, actor: Actor | Any, changes: Mapping[str, Any], action: str = "account.updated"
) -> Account:
    """Apply a partial update (any of ACCOUNT_FIELDS). `action` names the kind of change in the log (the settings
    pages log branding apart)."""
    unknown = set(changes) - ACCOUNT_FIELDS
    if unknown:
        raise ValueError(f"not account fields: {sorted(unknown)}")
    before = snapshot(account, list(changes))
    for name, value in changes.items():
        setattr(account, name, value)
    account.full_clean(validate_unique=False, validate_constraints=False)
    with transaction.atomic():
        account.save(update_fields=list(changes))
        audit_record(account=account, actor=actor, action=action, target=account.slug, before=before,
                     after=snapshot(account, list(changes)))
    return account


def seat_set(*, account: Account, actor: Actor, user: Any, role: str) -> tuple[Seat, bool]:
    """Give `user` a seat with `role` (a config file's seats: no inviting, no role ranking). Returns the seat and
    whether anything changed."""
    seat = Seat.objects.filter(account=account, user=user).first()
    if seat is not None and seat.role == role:
        return seat, False
    with transaction.atomic():
        if seat is None:
            seat = Seat(account=account, user=user, role=role)
            validated_save(seat)
            audit_record(account=account, actor=actor, action="seat.created", target=user.email,
                         after=snapshot(seat, ["role"]))
        else:
            before = snapshot(seat, ["role"])
            seat.role = role
            validated_save(seat)
            audit_record(account=account, actor=actor, action="seat.role_changed", target=user.email,
                         before=before, after=snapshot(seat, ["role"]))
    return seat, True


def price_override_set(
    *, account: Account, actor: Actor, provider: str, model: str, prices: Mapping[str, Decimal | None]
) -> tuple[PriceOverride, list[str]]:
    """The account's own price for a model (PRICE_FIELDS), created or changed. Returns it and the fields that
    changed (all of them for a new one)."""
    unknown = set(prices) - PRICE_FIELDS
    if unknown:
        raise ValueError(f"not price fields: {sorted(unknown)}")
    price = PriceOverride.objects.filter(account=account, provider=provider, model=model).first()
    target = f"{provider}/{model}"
    if price is None:
        price = PriceOverride(account=account, provider=provider, model=model, **prices)
        with transaction.atomic():
            validated_save(price)
            audit_record(account=account, actor=actor, action="price.created", target=target,
                         after=snapshot(price))
        return price, list(prices)
    changed = [name for name, value in prices.items() if getattr(price, name) != value]
    if changed:
        before = snapshot(price)
        for name in changed:
            setattr(price, name, prices[name])
        with transaction.atomic():
            validated_save(price)
            audit_record(account=account, actor=actor, action="price.updated", target=target, before=before,
                         after=snapshot(price))
    return price, changed


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


def _budget_target(budget: Budget) -> str:
    """What the budget caps, its identity (one budget per scope, match and period): not its limit, which changes."""
    return f"{budget.scope}{' ' + budget.match if budget.match else ''} / {budget.period}"


def _budget_snapshot(budget: Budget) -> dict[str, Any]:
    return {**snapshot(budget), "channels": sorted(budget.channels.values_list("name", flat=True))}


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
    budget.save()
    if channels is not None:
        # No channels named means every channel of the account (CONTRACT §6), stored as none.
        budget.channels.set(channels)
    return budget


def _owned(budget: Budget, account: Account) -> None:
    # The audit entry goes to `account`: it must be the budget's own.
    if budget.account_id != account.pk:
        raise ValueError(f"{budget!r} is not in account {account.slug!r}")


def budget_create(
    *,
    account: Account,
    actor: Actor,
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
    with transaction.atomic():
        _budget_save(budget, channel_ids)
        audit_record(account=account, actor=actor, action="budget.created", target=_budget_target(budget),
                     after=_budget_snapshot(budget))
    return budget


def budget_update(*, account: Account, actor: Actor, budget: Budget, changes: Mapping[str, Any]) -> Budget:
    """Apply a partial update (any of BUDGET_FIELDS); the result is validated whole."""
    _owned(budget, account)
    unknown = set(changes) - BUDGET_FIELDS
    if unknown:
        raise ValueError(f"not budget fields: {sorted(unknown)}")
    before = _budget_snapshot(budget)
    for name, value in changes.items():
        if name != "channel_ids":
            setattr(budget, name, value)
    with transaction.atomic():
        _budget_save(budget, changes.get("channel_ids"))
        audit_record(account=account, actor=actor, action="budget.updated", target=_budget_target(budget),
                     before=before, after=_budget_snapshot(budget))
    return budget


def budget_delete(*, account: Account, actor: Actor, budget: Budget) -> None:
    _owned(budget, account)
    with transaction.atomic():
        audit_record(account=account, actor=actor, action="budget.deleted", target=_budget_target(budget),
                     before=_budget_snapshot(budget))
        budget.delete()

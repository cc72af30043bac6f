"""Write-side actions on budgets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from billing.models import Account, Budget
from proxy.budgets import WILDCARD
from tokonomics.audit import Actor, audit_record, snapshot
from tokonomics.validation import ensure_unique

BUDGET_FIELDS = frozenset({"scope", "match", "period", "limit_usd", "hard", "alert_at", "channel_ids", "on_exceed",
                           "downgrade_to", "downgrade_at"})
def _channels_by_id(*, account: Account, channel_ids: Sequence[int]) -> list[Any]:
    """The account's alert channels with these ids; a ValidationError on `channel_ids` names any that are not."""
    # Reached through the relation, not imported: alerts sits above billing in the import graph.
    channel_model = Budget._meta.get_field("channels").related_model
    channels = list(channel_model._default_manager.filter(
account=account, pk__in=channel_ids))
    missing = sorted(set(channel_ids) - {channel.pk for channel in channels})
    if missing:
        ids = ", ".join(map(str, missing))
        raise ValidationError({"channel_ids": f"no alert channel with id {ids} in this account"})
    return channels


def _budget_target(budget: Budget) -> str:
    """What the budget caps, its identity (one budget per scope, match and period): not its limit, which changes."""
    return f"{budget.scope}{' ' + budget.match if budget.match else ''} / {budget.period}"


def _budget_snapshot(budget: Budget) -> dict[str, Any]:
    return {**snapshot(budget), "channels": sorted(budget.channels.values_list("name", flat=True))}


def _budget_save(budget: Budget, channel_ids: Sequence[int] | None) -> Budget:
    budget.alert_at = sorted(set(budget.alert_at))
    budget.full_clean(validate_unique=False, validate_constraints=False)
    if budget.scope == Budget.Scope.KEY and budget.match != WILDCARD and not budget.account.api_keys.filter(
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
    channels = None if channel_ids is None else _channels_by_id(account=budget.account, channel_ids=channel_ids)
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
    on_exceed: str = "deny",
    downgrade_to: str = "",
    downgrade_at: int = 90,
) -> Budget:
    """A new budget, validated as applyconfig validates one. No `channel_ids`: alerts go to every channel.
    `on_exceed` "downgrade" serves calls by `downgrade_to` from `downgrade_at` percent of the limit."""
    budget = Budget(account=account, scope=scope, match=match, period=period, limit_usd=limit_usd, hard=hard,
                    on_exceed=on_exceed, downgrade_to=downgrade_to, downgrade_at=downgrade_at)
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

"""What billing does when the proxy's objects change, and what a billing change tells the proxy."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed

from billing.models import Account, Budget, Plan, PriceOverride
from proxy.models import ApiKey
from proxy.services import api_key_renamed, config_version_bump
from proxy.signals import config_version_follow


def _bump(sender: Any, **kwargs: Any) -> None:
    config_version_bump()


def _key_budgets_rename(sender: Any, *, key: ApiKey, old_name: str, **kwargs: Any) -> None:
    """Key budgets name their key: they follow its rename (in the rename's transaction)."""
    Budget.objects.filter(account_id=key.account_id, scope=Budget.Scope.KEY, match=old_name).update(match=key.name)


def connect() -> None:
    # The proxy caches accounts, plans, budgets and prices: any change moves the configuration version.
    for model in (Account, Plan, Budget, PriceOverride):
        config_version_follow(model)
    m2m_changed.connect(_bump, sender=Budget.channels.through, dispatch_uid="cfgver-budget-channels")
    api_key_renamed.connect(_key_budgets_rename, sender=ApiKey, dispatch_uid="billing-key-budgets-rename")

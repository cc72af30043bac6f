"""Any change to what the proxy caches moves the configuration version."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save

from .services import config_version_bump


def _bump(sender: Any, **kwargs: Any) -> None:
    config_version_bump()


def connect() -> None:
    from billing.models import Account, Budget, Plan, PriceOverride

    from .models import ApiKey, ProviderEndpoint

    for model in (Account, Plan, ApiKey, ProviderEndpoint, Budget, PriceOverride):
        post_save.connect(_bump, sender=model, dispatch_uid=f"cfgver-save-{model.__name__}")
        post_delete.connect(_bump, sender=model, dispatch_uid=f"cfgver-delete-{model.__name__}")
    m2m_changed.connect(_bump, sender=Budget.channels.through, dispatch_uid="cfgver-budget-channels")

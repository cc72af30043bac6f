"""Any change to what the proxy caches moves the configuration version. The proxy's own models are
connected here; billing connects the models it owns (billing/signals.py)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save

from .models import ApiKey, ProviderEndpoint, Route
from .services import config_version_bump


def _bump(sender: Any, **kwargs: Any) -> None:
    config_version_bump()


def config_version_follow(model: type[models.Model]) -> None:
    """Move the configuration version whenever a row of `model` is saved or deleted."""
    post_save.connect(_bump, sender=model, dispatch_uid=f"cfgver-save-{model.__name__}")
    post_delete.connect(_bump, sender=model, dispatch_uid=f"cfgver-delete-{model.__name__}")


def connect() -> None:
    for model in (ApiKey, ProviderEndpoint, Route):
        config_version_follow(model)

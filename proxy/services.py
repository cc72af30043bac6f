"""Django-side actions on keys and endpoints that the proxy must learn about at once."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from redis.exceptions import RedisError

from tokonomics.redis_client import sync_redis

from .directory import CONFIG_VERSION_KEY
from .models import ApiKey

log = logging.getLogger(__name__)


def config_version_bump() -> None:
    """Tell every proxy process to drop its cached keys and accounts (they poll this counter)."""

    def bump() -> None:
        try:
            sync_redis().incr(CONFIG_VERSION_KEY)
        except RedisError:
            # Proxies that cannot see the version drop their caches anyway (see Directory).
            log.warning("could not bump the configuration version: Redis unreachable")

    transaction.on_commit(bump)


def api_key_revoke(*, keys: QuerySet[ApiKey]) -> int:
    count = keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    config_version_bump()
    return count

"""Django-side actions on keys and endpoints that the proxy must learn about at once."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone
from redis.exceptions import RedisError

from tokonomics.outbound_urls import url_problem
from tokonomics.redis_client import sync_redis
from tokonomics.validation import ensure_unique

from .catalog import BUILTIN_PROVIDERS
from .directory import CONFIG_VERSION_KEY
from .keys import generate_key, hash_key, visible_prefix
from .models import ApiKey, ProviderEndpoint

if TYPE_CHECKING:
    from billing.models import Account

log = logging.getLogger(__name__)

# Sent inside a key's rename transaction with `key` and `old_name`: what names the key (billing's key
# budgets) follows the rename there, and the proxy never has to know about it.
api_key_renamed = Signal()


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


KEY_FIELDS = frozenset(
    {"name", "environment", "allowed_models", "expires_at", "requests_per_minute", "tokens_per_minute",
     "max_concurrent"}
)
ENDPOINT_FIELDS = frozenset({"wire_format", "base_url", "pricing_provider", "credential"})


def _api_key_check(key: ApiKey, *, expires_at_changed: bool) -> None:
    key.full_clean(exclude=["key_hash"], validate_unique=False, validate_constraints=False)
    if expires_at_changed and key.expires_at is not None and key.expires_at <= timezone.now():
        raise ValidationError({"expires_at": "is in the past; to stop a key now, revoke it"})
    ensure_unique(
        ApiKey.objects.filter(account=key.account, name=key.name),
        instance=key,
        field="name",
        message=f"this account already has a key named {key.name!r}",
    )


def api_key_create(
    *,
    account: Account,
    name: str,
    environment: str = "production",
    allowed_models: Sequence[str] = (),
    expires_at: datetime | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    max_concurrent: int | None = None,
    created_by: AbstractBaseUser | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its plaintext, which is not stored anywhere: show it once. `created_by`: the person
    creating it in the web app (a member may revoke only the keys they created)."""
    plaintext = generate_key()
    key = ApiKey(
        account=account,
        name=name,
        key_hash=hash_key(plaintext),
        prefix=visible_prefix(plaintext),
        environment=environment,
        allowed_models=list(allowed_models),
        expires_at=expires_at,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        max_concurrent=max_concurrent,
        created_by=created_by,
    )
    _api_key_check(key, expires_at_changed=True)
    key.save()
    return key, plaintext


def api_key_update(*, key: ApiKey, changes: Mapping[str, Any]) -> ApiKey:
    """Apply a partial update (any of KEY_FIELDS). Key budgets that name the key follow a rename."""
    unknown = set(changes) - KEY_FIELDS
    if unknown:
        raise ValueError(f"not key fields: {sorted(unknown)}")
    old_name = key.name
    for name, value in changes.items():
        setattr(key, name, value)
    _api_key_check(key, expires_at_changed="expires_at" in changes)
    with transaction.atomic():
        key.save()
        if key.name != old_name:
            # Budgets live above the proxy: billing follows the rename in this same transaction.
            api_key_renamed.send(sender=ApiKey, key=key, old_name=old_name)
            config_version_bump()
    return key


def url_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: where a credential goes."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").rstrip("."), port


def credential_host_problem(*, old_url: str, new_url: str, has_credential: bool, credential_given: bool) -> str | None:
    """A stored credential was entered for one host: moving the endpoint elsewhere must not carry it there."""
    if not has_credential or credential_given or url_origin(old_url) == url_origin(new_url):
        return None
    return ("the base URL moves to another scheme, host or port: enter the credential again (or remove it), "
            "so a stored key is never sent to a host it was not entered for")


def _endpoint_save(endpoint: ProviderEndpoint, credential: str | None) -> ProviderEndpoint:
    if endpoint.base_url and (problem := url_problem(endpoint.base_url)):
        raise ValidationError({"base_url": problem})
    endpoint.base_url = endpoint.base_url.rstrip("/")
    endpoint.full_clean(validate_unique=False, validate_constraints=False)
    ensure_unique(
        ProviderEndpoint.objects.filter(account=endpoint.account, slug=endpoint.slug),
        instance=endpoint,
        field="slug",
        message=f"this account already has a provider endpoint {endpoint.slug!r}",
    )
    if credential is not None:
        endpoint.set_credential(credential)
    endpoint.save()
    return endpoint


def provider_endpoint_create(
    *,
    account: Account,
    slug: str,
    wire_format: str | None = None,
    base_url: str | None = None,
    pricing_provider: str | None = None,
    credential: str | None = None,
) -> ProviderEndpoint:
    """A new endpoint. A built-in slug (CONTRACT §1) defaults its wire format, base URL and pricing id."""
    builtin = BUILTIN_PROVIDERS.get(slug)
    problems = {}
    if builtin is None and wire_format is None:
        problems["wire_format"] = f"required for a custom provider (openai or anthropic); {slug!r} is not built in"
    if builtin is None and not base_url:
        problems["base_url"] = f"required for a custom provider; {slug!r} is not built in"
    if problems:
        raise ValidationError(problems)
    endpoint = ProviderEndpoint(
        account=account,
        slug=slug,
        wire_format=wire_format or builtin.wire_format,  # type: ignore[union-attr]
        base_url=base_url or builtin.base_url,  # type: ignore[union-attr]
        pricing_provider=pricing_provider if pricing_provider is not None else (builtin.pricing_id if builtin else ""),
    )
    return _endpoint_save(endpoint, credential)


def provider_endpoint_update(*, endpoint: ProviderEndpoint, changes: Mapping[str, Any]) -> ProviderEndpoint:
    """Apply a partial update (any of ENDPOINT_FIELDS). A credential of "" removes the stored one."""
    unknown = set(changes) - ENDPOINT_FIELDS
    if unknown:
        raise ValueError(f"not provider endpoint fields: {sorted(unknown)}")
    if "base_url" in changes and (problem := credential_host_problem(
        old_url=endpoint.base_url, new_url=changes["base_url"] or "", has_credential=endpoint.has_credential,
        credential_given="credential" in changes,
    )):
        raise ValidationError({"credential": problem})
    for name in ("wire_format", "base_url", "pricing_provider"):
        if name in changes:
            setattr(endpoint, name, changes[name])
    return _endpoint_save(endpoint, changes.get("credential"))


def provider_endpoint_delete(*, endpoint: ProviderEndpoint) -> None:
    endpoint.delete()

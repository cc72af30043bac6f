"""Django-side actions on keys and endpoints that the proxy must learn about at once."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone
from redis.exceptions import RedisError

from tokonomics.audit import Actor, audit_record, snapshot
from tokonomics.outbound_urls import url_problem
from tokonomics.redis_client import sync_redis
from tokonomics.validation import ensure_unique

from .catalog import BUILTIN_PROVIDERS, WIRE_FORMAT_PRICING
from .directory import CONFIG_VERSION_KEY
from .keys import generate_key, hash_key, visible_prefix
from .models import ApiKey, ProviderEndpoint, Route

if TYPE_CHECKING:
    from billing.models import Account

log = logging.getLogger(__name__)

# Sent inside a key's rename transaction with `key` and `old_name`: what names the key (billing's key
# budgets) follows the rename there, and the proxy never has to know about it.
api_key_renamed = Signal()
# Sent inside the transaction of a key's creation, revocation or rotation with `key` and `change`
# ("created", "revoked", "rotated"): alerts turns it into a `key.*` webhook event (CONTRACT §6).
api_key_changed = Signal()


def config_version_bump() -> None:
    """Tell every proxy process to drop its cached keys and accounts (they poll this counter)."""

    def bump() -> None:
        try:
            sync_redis().incr(CONFIG_VERSION_KEY)
        except RedisError:
            # Proxies that cannot see the version drop their caches anyway (see Directory).
            log.warning("could not bump the configuration version: Redis unreachable")

    transaction.on_commit(bump)


KEY_FIELDS = frozenset(
    {"name", "environment", "allowed_models", "expires_at", "requests_per_minute", "tokens_per_minute",
     "max_concurrent"}
)
ENDPOINT_FIELDS = frozenset({"wire_format", "base_url", "pricing_provider", "deployments", "credential"})


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


def _owned(obj: ApiKey | ProviderEndpoint, account: Account) -> None:
    # The audit entry goes to `account`: it must be the object's own.
    if obj.account_id != account.pk:
        raise ValueError(f"{obj!r} is not in account {account.slug!r}")


def api_key_create(
    *,
    account: Account,
    actor: Actor,
    name: str,
    environment: str = "production",
    allowed_models: Sequence[str] = (),
    expires_at: datetime | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    max_concurrent: int | None = None,
    plaintext: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its plaintext, which is not stored anywhere: show it once. A person creating it is
    recorded as its creator (a member may revoke only the keys they created). `plaintext`: a key chosen by the
    caller (applyconfig's `key:`), else one is generated."""
    plaintext = plaintext or generate_key()
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
        created_by=actor.user,
    )
    _api_key_check(key, expires_at_changed=True)
    with transaction.atomic():
        key.save()
        audit_record(account=account, actor=actor, action="key.created", target=key.name, after=snapshot(key))
        api_key_changed.send(sender=ApiKey, key=key, change="created")
    return key, plaintext


def api_key_update(*, account: Account, actor: Actor, key: ApiKey, changes: Mapping[str, Any]) -> ApiKey:
    """Apply a partial update (any of KEY_FIELDS). Key budgets that name the key follow a rename."""
    _owned(key, account)
    unknown = set(changes) - KEY_FIELDS
    if unknown:
        raise ValueError(f"not key fields: {sorted(unknown)}")
    before = snapshot(key)
    old_name = key.name
    for name, value in changes.items():
        setattr(key, name, value)
    _api_key_check(key, expires_at_changed="expires_at" in changes)
    with transaction.atomic():
        key.save()
        if key.name != old_name:
            # Budgets live above the proxy: billing follows the rename in this same transaction.
            api_key_renamed.send(sender=ApiKey, key=key, old_name=old_name)
            config_version_bump()  # the budgets' .update() sends no model signal
        audit_record(account=account, actor=actor, action="key.updated", target=old_name, before=before,
                     after=snapshot(key))
    return key


def api_key_replace(*, account: Account, actor: Actor, key: ApiKey, plaintext: str) -> ApiKey:
    """Give the key a new secret chosen by the caller (applyconfig's `key:`); the old one stops working.
    The log shows the new visible prefix only."""
    _owned(key, account)
    before = snapshot(key)
    key.key_hash, key.prefix = hash_key(plaintext), visible_prefix(plaintext)
    # A rotation's old secret, still in its grace period, stops too: "the old one stops working".
    key.previous_key_hash, key.previous_valid_until = None, None
    with transaction.atomic():
        key.save(update_fields=["key_hash", "prefix", "previous_key_hash", "previous_valid_until"])
        audit_record(account=account, actor=actor, action="key.replaced", target=key.name, before=before,
                     after=snapshot(key))
    return key


# The grace periods a rotation offers: how long the old secret keeps working beside the new one.
ROTATION_GRACE_CHOICES: dict[str, timedelta] = {
    "none": timedelta(0), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
}


def api_key_rotate(*, account: Account, actor: Actor, key: ApiKey, grace: timedelta) -> tuple[ApiKey, str]:
    """Give the key a new generated secret and return it (show it once). Settings, limits and the budgets that
    name the key stay. The old secret keeps working for `grace` (zero: it stops now); an earlier rotation's
    old secret stops at once. Proxies learn within a second (the configuration version moves)."""
    _owned(key, account)
    if key.revoked_at is not None:
        raise ValidationError("a revoked key cannot be rotated; create a new key")
    if grace < timedelta(0):
        raise ValueError("the grace period cannot be negative")
    plaintext = generate_key()
    before = snapshot(key)
    with transaction.atomic():
        if grace:
            key.previous_key_hash, key.previous_valid_until = key.key_hash, timezone.now() + grace
        else:
            key.previous_key_hash, key.previous_valid_until = None, None
        key.key_hash, key.prefix = hash_key(plaintext), visible_prefix(plaintext)
        key.save(update_fields=["key_hash", "prefix", "previous_key_hash", "previous_valid_until"])
        until = key.previous_valid_until
        audit_record(account=account, actor=actor, action="key.rotated", target=key.name, before=before,
                     after={**snapshot(key), "old_secret_valid_until": until.isoformat() if until else None})
        api_key_changed.send(sender=ApiKey, key=key, change="rotated")
        config_version_bump()
    return key, plaintext


def api_key_revoke(*, account: Account, actor: Actor, key: ApiKey) -> ApiKey:
    """Revoke a key: proxies refuse it within a second. Revoking a revoked key changes (and logs) nothing."""
    _owned(key, account)
    with transaction.atomic():
        # The filter makes a concurrent second revocation a no-op instead of moving revoked_at.
        if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            before = snapshot(key)
            key.refresh_from_db()
            audit_record(account=account, actor=actor, action="key.revoked", target=key.name, before=before,
                         after=snapshot(key))
            api_key_changed.send(sender=ApiKey, key=key, change="revoked")
            config_version_bump()
        else:
            key.refresh_from_db()
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
    actor: Actor,
    slug: str,
    wire_format: str | None = None,
    base_url: str | None = None,
    pricing_provider: str | None = None,
    deployments: dict[str, str] | None = None,
    credential: str | None = None,
) -> ProviderEndpoint:
    """A new endpoint. A built-in slug (CONTRACT §1) defaults its wire format, base URL and pricing id.
    `deployments` maps an Azure OpenAI deployment to the model it serves."""
    builtin = BUILTIN_PROVIDERS.get(slug)
    problems = {}
    if builtin is None and wire_format is None:
        problems["wire_format"] = (f"required for a custom provider (openai, anthropic, gemini or azure-openai); "
                                   f"{slug!r} is not built in")
    if not base_url and not (builtin and builtin.base_url):
        problems["base_url"] = (f"required for a custom provider; {slug!r} is not built in" if builtin is None
                                else f"required for {slug!r}: each account has its own")
    if problems:
        raise ValidationError(problems)
    endpoint = ProviderEndpoint(
        account=account,
        slug=slug,
        wire_format=wire_format or (builtin.wire_format if builtin else ""),  # a custom provider has both (above)
        base_url=base_url or (builtin.base_url if builtin else ""),
        pricing_provider=pricing_provider if pricing_provider is not None
        else (builtin.pricing_id if builtin else WIRE_FORMAT_PRICING.get(wire_format or "", "")),
        deployments=deployments or {},
    )
    with transaction.atomic():
        _endpoint_save(endpoint, credential)
        audit_record(account=account, actor=actor, action="provider.created", target=slug,
                     after=_endpoint_snapshot(endpoint))
    return endpoint


def _endpoint_snapshot(endpoint: ProviderEndpoint) -> dict[str, Any]:
    # Whether a credential is stored, never the credential: a rotation shows as an entry with no field change.
    return {**snapshot(endpoint), "has_credential": endpoint.has_credential}


def provider_endpoint_update(
    *, account: Account, actor: Actor, endpoint: ProviderEndpoint, changes: Mapping[str, Any]
) -> ProviderEndpoint:
    """Apply a partial update (any of ENDPOINT_FIELDS). A credential of "" removes the stored one. A new
    credential is logged as `credential_changed`, without its value."""
    _owned(endpoint, account)
    unknown = set(changes) - ENDPOINT_FIELDS
    if unknown:
        raise ValueError(f"not provider endpoint fields: {sorted(unknown)}")
    if "base_url" in changes and (problem := credential_host_problem(
        old_url=endpoint.base_url, new_url=changes["base_url"] or "", has_credential=endpoint.has_credential,
        credential_given="credential" in changes,
    )):
        raise ValidationError({"credential": problem})
    before = _endpoint_snapshot(endpoint)
    credential_changed = "credential" in changes and changes["credential"] != endpoint.get_credential()
    for name in ("wire_format", "base_url", "pricing_provider", "deployments"):
        if name in changes:
            setattr(endpoint, name, changes[name])
    with transaction.atomic():
        _endpoint_save(endpoint, changes.get("credential"))
        after = _endpoint_snapshot(endpoint)
        if credential_changed:
            before, after = {**before, "credential_changed": False}, {**after, "credential_changed": True}
        audit_record(account=account, actor=actor, action="provider.updated", target=endpoint.slug, before=before,
                     after=after)
    return endpoint


def provider_endpoint_delete(*, account: Account, actor: Actor, endpoint: ProviderEndpoint) -> None:
    _owned(endpoint, account)
    with transaction.atomic():
        audit_record(account=account, actor=actor, action="provider.deleted", target=endpoint.slug,
                     before=_endpoint_snapshot(endpoint))
        endpoint.delete()


ROUTE_FIELDS = frozenset({"name", "strategy", "targets", "max_attempts", "deadline_seconds", "retries", "backoff_ms",
                          "cache_ttl_seconds", "cache_nonzero_temperature"})


def _route_check(route: Route) -> None:
    """Model-level checks, then that every target names an endpoint of the route's own account."""
    route.full_clean(validate_unique=False, validate_constraints=False)
    slugs = set(ProviderEndpoint.objects.filter(account_id=route.account_id).values_list("slug", flat=True))
    missing = sorted({t["endpoint"] for t in route.targets} - slugs)
    if missing:
        raise ValidationError({"targets": f"no provider endpoint {', '.join(map(repr, missing))} in this account"})
    ensure_unique(Route.objects.filter(account_id=route.account_id, name=route.name), instance=route, field="name",
                  message=f"this account already has a route named {route.name!r}")


def route_create(*, account: Account, actor: Actor, name: str, targets: list[dict[str, Any]],
                 **fields: Any) -> Route:
    """A route: calls naming model `name` are served by `targets` (docs/CONTRACT.md "Routes and cache")."""
    unknown = set(fields) - ROUTE_FIELDS
    if unknown:
        raise ValueError(f"not route fields: {sorted(unknown)}")
    route = Route(account=account, name=name, targets=targets, **fields)
    with transaction.atomic():
        _route_check(route)
        route.save()
        audit_record(account=account, actor=actor, action="route.created", target=route.name, after=snapshot(route))
    return route


def route_update(*, account: Account, actor: Actor, route: Route, changes: Mapping[str, Any]) -> Route:
    if route.account_id != account.pk:
        raise ValueError(f"{route!r} is not in account {account.slug!r}")
    unknown = set(changes) - ROUTE_FIELDS
    if unknown:
        raise ValueError(f"not route fields: {sorted(unknown)}")
    before, old_name = snapshot(route), route.name
    for name, value in changes.items():
        setattr(route, name, value)
    with transaction.atomic():
        _route_check(route)
        route.save()
        audit_record(account=account, actor=actor, action="route.updated", target=old_name, before=before,
                     after=snapshot(route))
    return route


def route_delete(*, account: Account, actor: Actor, route: Route) -> None:
    if route.account_id != account.pk:
        raise ValueError(f"{route!r} is not in account {account.slug!r}")
    with transaction.atomic():
        audit_record(account=account, actor=actor, action="route.deleted", target=route.name, before=snapshot(route))
        route.delete()

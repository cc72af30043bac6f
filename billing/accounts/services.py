"""The account itself: its settings, policy, branding, SSO configuration and model prices, as the
settings pages, the REST API, a config file and the admin set them. Each service records its change in the
audit log in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from billing.models import Account, Plan, PriceOverride, SsoConfig
from billing.sso.domains import sso_domains_sync
from billing.sso.services import issuer_problem
from proxy.response_cache import entry_key, index_key, sizes_key
from proxy.services import credential_host_problem
from tokonomics.audit import Actor, audit_record, snapshot
from tokonomics.redis_client import sync_redis
from tokonomics.validation import ensure_unique, validated_save

SETTINGS_FIELDS = ("name", "timezone", "retention_days", "on_redis_unavailable", "allow_unmetered_routes",
                   "allow_unpriced_models")
# The response cache's settings (the settings page's cache form, the REST API, a config file's `cache:`).
CACHE_FIELDS = ("cache_enabled", "cache_ttl_seconds", "cache_max_entry_bytes", "cache_max_total_bytes",
                "cache_nonzero_temperature")
# What the REST API may change on its account: how the proxy treats calls.
POLICY_FIELDS = frozenset({"on_redis_unavailable", "allow_unmetered_routes", "allow_unpriced_models", *CACHE_FIELDS})
BRANDING_FIELDS = ("brand_name", "brand_logo_url", "brand_accent_color")
SSO_FIELDS = ("enabled", "issuer", "client_id", "default_role", "password_login_disabled")


def _fields_update(account: Account, actor: Any, action: str, fields: dict[str, Any]) -> Account:
    return account_update(account=account, actor=actor, changes=fields, action=action)


def account_settings_update(
    *, account: Account, actor: User, name: str, timezone: str, retention_days: int | None,
    on_redis_unavailable: str, allow_unmetered_routes: bool, allow_unpriced_models: bool = False,
) -> Account:
    fields = {"name": name, "timezone": timezone, "retention_days": retention_days,
              "on_redis_unavailable": on_redis_unavailable, "allow_unmetered_routes": allow_unmetered_routes,
              "allow_unpriced_models": allow_unpriced_models}
    if retention_days is not None and retention_days < 1:
        raise ValidationError({"retention_days": "Keep usage at least one day, or leave empty for the plan's."})
    return _fields_update(account, actor, "account.updated", fields)


def account_policy_update(*, account: Account, actor: Any, changes: dict[str, Any]) -> Account:
    """Change any of POLICY_FIELDS (the REST API's PATCH /account; `actor` is its management token), audited
    as the settings page's changes are."""
    unknown = set(changes) - POLICY_FIELDS
    if unknown:
        raise ValueError(f"not account policy fields: {sorted(unknown)}")
    if not changes:
        return account
    cache = {name: value for name, value in changes.items() if name in CACHE_FIELDS}
    if cache:
        account_cache_update(account=account, actor=actor, changes=cache)
    others = {name: value for name, value in changes.items() if name not in CACHE_FIELDS}
    return _fields_update(account, actor, "account.updated", others) if others else account


def account_cache_update(*, account: Account, actor: Actor | Any, changes: Mapping[str, Any]) -> Account:
    """Change any of CACHE_FIELDS, logged as `account.cache_changed` (turning the cache on starts keeping
    answers, encrypted: the settings page says what)."""
    unknown = set(changes) - set(CACHE_FIELDS)
    if unknown:
        raise ValueError(f"not cache fields: {sorted(unknown)}")
    changed = {name: value for name, value in changes.items() if getattr(account, name) != value}
    if not changed:
        return account
    turned_off = account.cache_enabled and changed.get("cache_enabled") is False
    account = account_update(account=account, actor=actor, changes=changed, action="account.cache_changed")
    if turned_off:
        # Off means nothing kept: its answers go now, not when their TTL ends.
        account_id = account.pk
        transaction.on_commit(lambda: cache_entries_delete(account_id=account_id))
    return account


def cache_entries_delete(*, account_id: int) -> int:
    """Remove every answer the account's response cache keeps; returns how many."""
    client = sync_redis()
    names = [name.decode() for name in cast(list[bytes], client.zrange(index_key(account_id), 0, -1))]
    keys = [entry_key(account_id, name) for name in names]
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])
    client.delete(index_key(account_id), sizes_key(account_id))
    return len(names)


def account_branding_update(
    *, account: Account, actor: User, brand_name: str, brand_logo_url: str, brand_accent_color: str
) -> Account:
    if not account.plan.white_label:
        raise PermissionDenied(f"White-label is not part of the {account.plan.name} plan.")
    fields = {"brand_name": brand_name, "brand_logo_url": brand_logo_url, "brand_accent_color": brand_accent_color}
    return _fields_update(account, actor, "account.branding_changed", fields)


def sso_config_update(
    *, account: Account, actor: User, enabled: bool, issuer: str, client_id: str,
    client_secret: str | None, allowed_domains: list[str], default_role: str, password_login_disabled: bool,
) -> SsoConfig:
    """Create or change the account's SSO configuration. `client_secret` None keeps the stored one."""
    if not account.plan.sso:
        raise PermissionDenied(f"Single sign-on is not part of the {account.plan.name} plan.")
    config = SsoConfig.objects.filter(account=account).first() or SsoConfig(account=account)
    problem = issuer_problem(issuer)
    if problem:
        raise ValidationError({"issuer": problem})
    if not client_secret and not config.secret_encrypted:
        raise ValidationError({"client_secret": "Enter the client secret the identity provider gave you."})
    # The secret goes to the issuer's token endpoint: it was entered for one host, and never follows
    # the issuer to another (else an owner, or the IdP signing in as one, could collect it).
    if credential_host_problem(old_url=config.issuer, new_url=issuer, has_credential=bool(config.secret_encrypted),
                               credential_given=bool(client_secret)):
        raise ValidationError({"client_secret": "The issuer moves to another scheme, host or port: enter the client "
                                                "secret again, so the stored one is never sent to a server it was "
                                                "not entered for."})
    before = snapshot(config, list(SSO_FIELDS)) if config.pk else {}
    config.enabled, config.issuer, config.client_id = enabled, issuer, client_id
    config.default_role = default_role
    config.password_login_disabled = password_login_disabled
    if client_secret:
        config.set_client_secret(client_secret)
    config.full_clean(exclude=["account"], validate_unique=False, validate_constraints=False)
    after = snapshot(config, list(SSO_FIELDS))
    if client_secret:
        after["client_secret"] = "(changed)"  # noqa: S105 -- that it changed, never the value
    with transaction.atomic():
        config.save()
        audit_record(account=account, actor=actor, action="sso.updated" if before else "sso.configured",
                     target=config.issuer, before=before, after=after)
        # Claims start pending: they sign nobody in until proven (billing.sso.domains).
        sso_domains_sync(config=config, actor=actor, domains=allowed_domains)
    return config


ACCOUNT_FIELDS = frozenset({"name", "plan", "timezone", "retention_days", "on_redis_unavailable",
                            "allow_unmetered_routes", "allow_unpriced_models", "brand_name", "brand_logo_url",
                            "brand_accent_color", *CACHE_FIELDS})
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


def price_override_delete(*, account: Account, actor: Actor, price: PriceOverride) -> None:
    """Drop the account's own price: the catalogue's applies again to calls from now on."""
    if price.account_id != account.pk:
        raise ValueError(f"{price!r} is not in account {account.slug!r}")
    with transaction.atomic():
        audit_record(account=account, actor=actor, action="price.deleted", target=f"{price.provider}/{price.model}",
                     before=snapshot(price))
        price.delete()

"""applyconfig: a declarative, idempotent upsert of accounts and everything they hold (CONTRACT §5).

A file is validated whole before anything is written; the write is one transaction.
"""

from __future__ import annotations

import zoneinfo
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models, transaction
from pydantic import ValidationError as SchemaError

from alerts.models import AlertChannel, AlertRule, generate_webhook_secret
from billing.config_schema import AccountIn, ConfigIn, ProviderIn
from billing.models import Account, Budget, Plan, PriceOverride, Seat
from proxy.catalog import BUILTIN_PROVIDERS
from proxy.keys import generate_key, hash_key, visible_prefix
from proxy.models import ApiKey, ProviderEndpoint
from proxy.services import credential_host_problem
from tokonomics.outbound_urls import url_problem


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ApplyResult:
    changes: list[str] = field(default_factory=list)
    new_keys: list[tuple[str, str, str]] = field(default_factory=list)  # (account, key name, plaintext)


def _location(loc: tuple[Any, ...], data: Mapping[str, Any]) -> str:
    """`('accounts', 0, 'keys', 1, 'expires_at')` → `accounts[0] (acme).keys[1].expires_at`."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
            label = node.get("slug") or node.get("name") or node.get("email") if isinstance(node, dict) else None
            if isinstance(label, str):
                parts[-1] += f" ({label})"
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def config_parse(*, data: Any, environ: Mapping[str, str]) -> ConfigIn:
    """Validate a loaded YAML document. Raises ConfigError listing every problem, by field."""
    if not isinstance(data, dict):
        raise ConfigError(["the file must be a mapping with a top-level `accounts:` list"])
    try:
        config = ConfigIn.model_validate(data)
    except SchemaError as exc:
        raise ConfigError(
            [f"{_location(err['loc'], data)}: {err['msg']}" for err in exc.errors(include_url=False)]
        ) from None
    problems: list[str] = []
    plans = {p.slug: p for p in Plan.objects.all()}
    _duplicates(problems, "accounts", [a.slug for a in config.accounts])
    for index, account in enumerate(config.accounts):
        where = f"accounts[{index}] ({account.slug})"
        problems.extend(f"{where}.{p}" for p in _account_problems(account, plans, environ))
    if problems:
        raise ConfigError(problems)
    return config


def _duplicates(problems: list[str], where: str, names: list[str]) -> None:
    for name, count in Counter(names).items():
        if count > 1:
            problems.append(f"{where}: {name!r} appears {count} times")


def _account_problems(account: AccountIn, plans: dict[str, Plan], environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    plan = plans.get(account.plan)
    if plan is None:
        problems.append(f"plan: unknown plan {account.plan!r} (known: {', '.join(sorted(plans))})")
    else:
        problems.extend(_plan_limit_problems(account, plan))
    if account.timezone not in zoneinfo.available_timezones():
        problems.append(f"timezone: {account.timezone!r} is not an IANA time zone (e.g. UTC, Europe/Paris)")
    _duplicates(problems, "providers", [p.slug for p in account.providers])
    _duplicates(problems, "seats", [s.email.lower() for s in account.seats])
    _duplicates(problems, "keys", [k.name for k in account.keys])
    _duplicates(problems, "budgets", [f"{b.scope} {b.match} {b.period}".replace("  ", " ") for b in account.budgets])
    _duplicates(problems, "alert_channels", [c.resolved_name for c in account.alert_channels])
    _duplicates(problems, "prices", [f"{p.provider}/{p.model}" for p in account.prices])

    for i, provider in enumerate(account.providers):
        problems.extend(f"providers[{i}] ({provider.slug}).{p}" for p in _provider_problems(provider, environ))
        if problem := _provider_credential_problem(account.slug, provider):
            problems.append(f"providers[{i}] ({provider.slug}).api_key: {problem}")
    for i, seat in enumerate(account.seats):
        if seat.password_env and not environ.get(seat.password_env):
            problems.append(
                f"seats[{i}] ({seat.email}).password_env: environment variable {seat.password_env} is not set"
            )
    for i, key in enumerate(account.keys):
        if key.key and ApiKey.objects.filter(key_hash=hash_key(key.key)).exclude(
            account__slug=account.slug, name=key.name
        ).exists():
            problems.append(f"keys[{i}] ({key.name}).key: this key is already in use by another key")
    channel_names = {c.resolved_name for c in account.alert_channels} | set(
        AlertChannel.objects.filter(account__slug=account.slug).values_list("name", flat=True)
    )
    key_names = {k.name for k in account.keys} | set(
        ApiKey.objects.filter(account__slug=account.slug).values_list("name", flat=True)
    )
    for i, budget in enumerate(account.budgets):
        if budget.scope == "key" and budget.match != "*" and budget.match not in key_names:
            problems.append(f"budgets[{i}].match: no key named {budget.match!r} in this account")
        for name in set(budget.channels or []) - channel_names:
            problems.append(f"budgets[{i}].channels: no alert channel named {name!r}")
    for i, rule in enumerate(account.alert_rules):
        for name in set(rule.channels or []) - channel_names:
            problems.append(f"alert_rules[{i}].channels: no alert channel named {name!r}")
    for i, channel in enumerate(account.alert_channels):
        if channel.url and (problem := url_problem(channel.url)):
            problems.append(f"alert_channels[{i}].url: {problem}")
        if channel.secret_env and not environ.get(channel.secret_env):
            problems.append(f"alert_channels[{i}].secret_env: environment variable {channel.secret_env} is not set")
    provider_slugs = {p.slug for p in account.providers} | set(
        ProviderEndpoint.objects.filter(account__slug=account.slug).values_list("slug", flat=True)
    )
    for i, price in enumerate(account.prices):
        if price.provider not in provider_slugs:
            problems.append(f"prices[{i}].provider: no provider {price.provider!r} in this account")
        problems.extend(f"prices[{i}] ({price.provider}/{price.model}).{p}" for p in _price_problems(price))
    return problems


def _plan_limit_problems(account: AccountIn, plan: Plan) -> list[str]:
    problems = []
    seats = {s.email.lower() for s in account.seats} | set(
        Seat.objects.filter(account__slug=account.slug).values_list("user__email", flat=True)
    )
    if plan.max_seats is not None and len(seats) > plan.max_seats:
        problems.append(f"seats: the {plan.name} plan has {plan.max_seats} seat(s), this account would have "
                        f"{len(seats)}; remove seats or choose a larger plan")
    rules = {(r.kind, r.scope, r.match) for r in account.alert_rules} | set(
        AlertRule.objects.filter(account__slug=account.slug).values_list("kind", "scope", "match")
    )
    if plan.max_alert_rules is not None and len(rules) > plan.max_alert_rules:
        problems.append(f"alert_rules: the {plan.name} plan allows {plan.max_alert_rules} alert rules, this account "
                        f"would have {len(rules)}; remove rules or choose a larger plan")
    return problems


def _provider_problems(provider: ProviderIn, environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    builtin = BUILTIN_PROVIDERS.get(provider.slug)
    if builtin is None and provider.kind is None:
        problems.append(
            f"kind: required for a custom provider (openai or anthropic); {provider.slug!r} is not built in"
        )
    if builtin is None and not provider.base_url:
        problems.append(f"base_url: required for a custom provider; {provider.slug!r} is not built in")
    if provider.base_url and (problem := url_problem(provider.base_url)):
        problems.append(f"base_url: {problem}")
    if provider.api_key_env and not environ.get(provider.api_key_env):
        problems.append(f"api_key_env: environment variable {provider.api_key_env} is not set")
    return problems


def _provider_credential_problem(account_slug: str, provider: ProviderIn) -> str | None:
    existing = ProviderEndpoint.objects.filter(account__slug=account_slug, slug=provider.slug).first()
    builtin = BUILTIN_PROVIDERS.get(provider.slug)
    new_url = provider.base_url or (builtin.base_url if builtin else "")
    if existing is None or not new_url:
        return None
    return credential_host_problem(old_url=existing.base_url, new_url=new_url, has_credential=existing.has_credential,
                                   credential_given=bool(provider.api_key or provider.api_key_env))


def _price_problems(price: Any) -> list[str]:
    from proxy.pricing import validate_override

    return validate_override(
        provider=price.provider,
        model=price.model,
        input_per_mtok=price.input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        cached_input_per_mtok=price.cached_input_per_mtok,
        cache_write_per_mtok=price.cache_write_per_mtok,
    )


def _upsert(
    model: type[models.Model], lookup: dict[str, Any], values: dict[str, Any]
) -> tuple[models.Model, str | None]:
    """Create or update one row; returns it and what changed ('created', 'updated a, b', or None)."""
    obj = model.objects.filter(**lookup).first()
    if obj is None:
        obj = model(**lookup, **values)
        obj.full_clean(validate_unique=False, validate_constraints=False)
        obj.save()
        return obj, "created"
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if not changed:
        return obj, None
    for name in changed:
        setattr(obj, name, values[name])
    obj.full_clean(validate_unique=False, validate_constraints=False)
    obj.save()
    return obj, f"updated {', '.join(changed)}"


def config_apply(*, config: ConfigIn, environ: Mapping[str, str]) -> ApplyResult:
    """Write a validated config in one transaction. Only what differs is written."""
    result = ApplyResult()
    try:
        with transaction.atomic():
            for account_in in config.accounts:
                _apply_account(account_in, environ, result)
    except ValidationError as exc:
        raise ConfigError([f"{name}: {'; '.join(errors)}" for name, errors in exc.message_dict.items()]) from None
    return result


def _apply_account(spec: AccountIn, environ: Mapping[str, str], result: ApplyResult) -> None:
    def note(what: str, change: str | None) -> None:
        if change:
            result.changes.append(f"{spec.slug}: {change} {what}")

    account, change = _upsert(
        Account,
        {"slug": spec.slug},
        {
            "name": spec.name,
            "plan": Plan.objects.get(slug=spec.plan),
            "timezone": spec.timezone,
            "retention_days": spec.retention_days,
            "on_redis_unavailable": spec.on_redis_unavailable,
            "allow_unmetered_routes": spec.allow_unmetered_routes,
            "allow_unpriced_models": spec.allow_unpriced_models,
            "brand_name": spec.brand_name,
            "brand_logo_url": spec.brand_logo_url,
            "brand_accent_color": spec.brand_accent_color,
        },
    )
    note("account", change)

    for provider in spec.providers:
        builtin = BUILTIN_PROVIDERS.get(provider.slug)
        endpoint, change = _upsert(
            ProviderEndpoint,
            {"account": account, "slug": provider.slug},
            {
                "wire_format": provider.kind or builtin.wire_format,  # type: ignore[union-attr]
                "base_url": (provider.base_url or builtin.base_url).rstrip("/"),  # type: ignore[union-attr]
                "pricing_provider": provider.pricing_provider or (builtin.pricing_id if builtin else ""),
            },
        )
        secret = provider.api_key or (environ[provider.api_key_env] if provider.api_key_env else None)
        if secret is not None and endpoint.get_credential() != secret:
            endpoint.set_credential(secret)
            endpoint.save(update_fields=["credential_encrypted", "updated_at"])
            change = change or "updated credential of"
        note(f"provider {provider.slug}", change)

    User = get_user_model()
    for seat in spec.seats:
        email = seat.email.lower()
        user = User.objects.filter(email__iexact=email).first()
        user_change = None
        if user is None:
            user = User.objects.create_user(username=email, email=email)
            user.set_unusable_password()
            user_change = "created"
        if seat.password_env and not user.check_password(environ[seat.password_env]):
            user.set_password(environ[seat.password_env])
            user_change = user_change or "updated password of"
        if user_change:
            user.save()
        _, change = _upsert(Seat, {"account": account, "user": user}, {"role": seat.role})
        note(f"seat {email}", change or user_change)

    for key in spec.keys:
        values: dict[str, Any] = {
            "environment": key.environment,
            "allowed_models": key.allowed_models,
            "expires_at": key.expires_at,
            "requests_per_minute": key.requests_per_minute,
            "tokens_per_minute": key.tokens_per_minute,
            "max_concurrent": key.max_concurrent,
        }
        existing = ApiKey.objects.filter(account=account, name=key.name).first()
        plaintext = key.key
        if plaintext is None and existing is None:
            plaintext = generate_key()
            result.new_keys.append((spec.slug, key.name, plaintext))
        if plaintext is not None:
            values |= {"key_hash": hash_key(plaintext), "prefix": visible_prefix(plaintext)}
        _, change = _upsert(ApiKey, {"account": account, "name": key.name}, values)
        note(f"key {key.name}", change.replace("key_hash, prefix", "key") if change else None)

    channels: dict[str, AlertChannel] = {c.name: c for c in account.alert_channels.all()}
    for channel_in in spec.alert_channels:
        name = channel_in.resolved_name
        url, emails = channel_in.url or "", channel_in.to or []
        channel = channels.get(name) or AlertChannel(account=account, name=name)
        # Kind and url change together through set_url (a Slack URL is stored encrypted): compared decrypted.
        changed = [field for field, same in (("kind", channel.kind == channel_in.kind),
                                             ("url", channel.destination_url() == url),
                                             ("emails", channel.emails == emails)) if not same]
        change = "created" if channel.pk is None else f"updated {', '.join(changed)}" if changed else None
        if change:
            if "kind" in changed or "url" in changed:
                channel.set_url(url, kind=channel_in.kind)
            channel.emails = emails
            channel.full_clean(validate_unique=False, validate_constraints=False)
            channel.save()
        secret = channel_in.secret or (environ[channel_in.secret_env] if channel_in.secret_env else None)
        if channel.kind == AlertChannel.Kind.WEBHOOK:
            if secret is None and not channel.secret_encrypted:
                secret = generate_webhook_secret()
            if secret is not None and channel.get_secret() != secret:
                channel.set_secret(secret)
                channel.save(update_fields=["secret_encrypted"])
                change = change or "updated secret of"
        channels[name] = channel
        note(f"alert channel {name}", change)

    keys_by_name = {k.name: k for k in account.api_keys.all()}
    for budget_in in spec.budgets:
        budget, change = _upsert(
            Budget,
            {"account": account, "scope": budget_in.scope, "match": budget_in.match, "period": budget_in.period},
            {"limit_usd": budget_in.limit_usd, "hard": budget_in.hard, "alert_at": budget_in.alert_at},
        )
        change = _set_channels(budget, budget_in.channels, channels) or change
        label = f"budget {budget_in.scope}{' ' + budget_in.match if budget_in.match else ''}/{budget_in.period}"
        if budget_in.scope == "key" and budget_in.match != "*":
            assert budget_in.match in keys_by_name
        note(label, change)

    for rule_in in spec.alert_rules:
        rule, change = _upsert(
            AlertRule,
            {"account": account, "kind": rule_in.kind, "scope": rule_in.scope, "match": rule_in.match},
            {
                "window_minutes": rule_in.window_minutes,
                "multiplier": rule_in.multiplier,
                "floor_usd": rule_in.floor_usd,
            },
        )
        change = _set_channels(rule, rule_in.channels, channels) or change
        note(f"alert rule {rule_in.kind} {rule_in.scope} {rule_in.match}", change)

    for price in spec.prices:
        _, change = _upsert(
            PriceOverride,
            {"account": account, "provider": price.provider, "model": price.model},
            {
                "input_per_mtok": price.input_per_mtok,
                "output_per_mtok": price.output_per_mtok,
                "cached_input_per_mtok": price.cached_input_per_mtok,
                "cache_write_per_mtok": price.cache_write_per_mtok,
            },
        )
        note(f"price {price.provider}/{price.model}", change)


def _set_channels(obj: Budget | AlertRule, names: list[str] | None, channels: dict[str, AlertChannel]) -> str | None:
    """None means 'every channel of the account' (CONTRACT §6): stored as no explicit channels."""
    wanted = {channels[n].pk for n in names or []}
    current = set(obj.channels.values_list("pk", flat=True))
    if wanted == current:
        return None
    obj.channels.set(wanted)
    return "updated channels of"

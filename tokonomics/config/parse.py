"""applyconfig's first half: a loaded file is checked whole (shape, then against the database) before
anything is written, and every problem is reported by where it is in the file."""

from __future__ import annotations

import zoneinfo
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError as SchemaError

from alerts.models import AlertChannel, AlertRule
from billing.models import Plan, Seat
from proxy.budgets import WILDCARD
from proxy.catalog import BUILTIN_PROVIDERS
from proxy.keys import hash_key
from proxy.models import ApiKey, ProviderEndpoint, deployments_problem
from proxy.pricing import validate_override
from proxy.services import credential_host_problem
from tokonomics.config.schema import AccountIn, ConfigIn, PriceIn, ProviderIn
from tokonomics.outbound_urls import url_problem


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


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
    _duplicates(problems, "routes", [r.name for r in account.routes])

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
        if budget.scope == "key" and budget.match != WILDCARD and budget.match not in key_names:
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
    for i, route in enumerate(account.routes):
        for j, target in enumerate(route.targets):
            if target.provider not in provider_slugs:
                problems.append(f"routes[{i}] ({route.name}).targets[{j}].provider: no provider {target.provider!r} "
                                "in this account")
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
            f"kind: required for a custom provider (openai, anthropic, gemini or azure-openai); {provider.slug!r} "
            "is not built in"
        )
    if provider.deployments is not None and (problem := deployments_problem(provider.deployments)):
        problems.append(f"deployments: {problem}")
    if builtin is None and not provider.base_url:
        problems.append(f"base_url: required for a custom provider; {provider.slug!r} is not built in")
    elif builtin is not None and not builtin.base_url and not provider.base_url:
        problems.append(f"base_url: required for {provider.slug!r}: each account has its own")
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


def _price_problems(price: PriceIn) -> list[str]:
    return validate_override(
        provider=price.provider,
        model=price.model,
        input_per_mtok=price.input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        cached_input_per_mtok=price.cached_input_per_mtok,
        cache_write_per_mtok=price.cache_write_per_mtok,
    )

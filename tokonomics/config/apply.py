"""applyconfig's second half: write a parsed file, one object at a time, through the same services as the web
app and the REST API (so every change is validated and audited alike, the file named as the actor).

Idempotent: each step compares the file with what is stored and calls a service only for what differs; the
whole file is one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from alerts.models import AlertChannel, AlertRule, generate_webhook_secret
from alerts.services import alert_channel_create, alert_channel_update, alert_rule_create, alert_rule_update
from billing.accounts.services import (
    CACHE_FIELDS,
    account_cache_update,
    account_create,
    account_update,
    price_override_set,
)
from billing.accounts.team import seat_set
from billing.budgets.services import budget_create, budget_update
from billing.models import Account, Budget, Plan
from proxy.catalog import BUILTIN_PROVIDERS, WIRE_FORMAT_PRICING
from proxy.guardrail_policies import guardrail_policy_delete, guardrail_policy_get, guardrail_policy_put
from proxy.keys import hash_key
from proxy.models import ApiKey, ProviderEndpoint, Route
from proxy.services import (
    api_key_create,
    api_key_replace,
    api_key_update,
    provider_endpoint_create,
    provider_endpoint_update,
    route_create,
    route_update,
)
from tokonomics.audit import Actor
from tokonomics.config.parse import ConfigError
from tokonomics.config.schema import (
    AccountIn,
    AlertChannelIn,
    AlertRuleIn,
    BudgetIn,
    ConfigIn,
    KeyIn,
    PriceIn,
    ProviderIn,
    RouteIn,
    SeatIn,
)


@dataclass
class ApplyResult:
    changes: list[str] = field(default_factory=list)
    new_keys: list[tuple[str, str, str]] = field(default_factory=list)  # (account, key name, plaintext)


@dataclass
class _Run:
    """What every step of one account needs: where to write, as whom, and where to report."""

    account: Account
    environ: Mapping[str, str]
    actor: Actor
    result: ApplyResult

    def note(self, what: str, change: str | None) -> None:
        if change:
            self.result.changes.append(f"{self.account.slug}: {change} {what}")


def _changed(obj: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that differ from the object's, in the file's order (the order the report lists them in)."""
    return {name: value for name, value in values.items() if getattr(obj, name) != value}


def _updated(names: list[str] | dict[str, Any]) -> str | None:
    return f"updated {', '.join(names)}" if names else None


def config_apply(*, config: ConfigIn, environ: Mapping[str, str], actor: Actor) -> ApplyResult:
    """Write a validated config in one transaction. Only what differs is written."""
    result = ApplyResult()
    try:
        with transaction.atomic():
            for spec in config.accounts:
                _apply_account(spec, environ=environ, actor=actor, result=result)
    except ValidationError as exc:
        raise ConfigError([f"{name}: {'; '.join(errors)}" for name, errors in exc.message_dict.items()]) from None
    return result


def _apply_account(spec: AccountIn, *, environ: Mapping[str, str], actor: Actor, result: ApplyResult) -> None:
    account, change = _account_step(spec, actor)
    run = _Run(account=account, environ=environ, actor=actor, result=result)
    run.note("account", change)
    for provider in spec.providers:
        _provider_step(run, provider)
    for route in spec.routes:  # after the providers they name, before the budgets that may downgrade to them
        _route_step(run, route)
    for seat in spec.seats:
        _seat_step(run, seat)
    for key in spec.keys:
        _key_step(run, key)
    if "guardrails" in spec.model_fields_set:
        _guardrails_step(run, None, spec.guardrails)
    for key in spec.keys:
        if "guardrails" in key.model_fields_set:
            _guardrails_step(run, ApiKey.objects.get(account=run.account, name=key.name), key.guardrails)
    channels = {c.name: c for c in account.alert_channels.all()}
    for channel_in in spec.alert_channels:
        channels[channel_in.resolved_name] = _channel_step(run, channel_in)
    for budget in spec.budgets:
        _budget_step(run, budget, channels)
    for rule in spec.alert_rules:
        _rule_step(run, rule, channels)
    for price in spec.prices:
        _price_step(run, price)


def _account_step(spec: AccountIn, actor: Actor) -> tuple[Account, str | None]:
    values: dict[str, Any] = {
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
        **{f"cache_{name}": value for name, value in spec.cache.model_dump().items()},
    }
    account = Account.objects.filter(slug=spec.slug).first()
    if account is None:
        return account_create(actor=actor, slug=spec.slug, **values), "created"
    changes = _changed(account, values)
    cache = {name: value for name, value in changes.items() if name in CACHE_FIELDS}
    if cache:
        account_cache_update(account=account, actor=actor, changes=cache)
    if others := {name: value for name, value in changes.items() if name not in CACHE_FIELDS}:
        account_update(account=account, actor=actor, changes=others)
    return account, _updated(changes)


def _provider_step(run: _Run, spec: ProviderIn) -> None:
    builtin = BUILTIN_PROVIDERS.get(spec.slug)
    values: dict[str, Any] = {
        # Parse made sure a provider that is not built in names both.
        "wire_format": spec.kind or (builtin.wire_format if builtin else ""),
        "base_url": (spec.base_url or (builtin.base_url if builtin else "")).rstrip("/"),
        "pricing_provider": spec.pricing_provider or (builtin.pricing_id if builtin
                                                      else WIRE_FORMAT_PRICING.get(spec.kind or "", "")),
    }
    if spec.deployments is not None:
        values["deployments"] = spec.deployments
    credential = spec.api_key or (run.environ[spec.api_key_env] if spec.api_key_env else None)
    endpoint = ProviderEndpoint.objects.filter(account=run.account, slug=spec.slug).first()
    if endpoint is None:
        provider_endpoint_create(account=run.account, actor=run.actor, slug=spec.slug, credential=credential,
                                 **values)
        run.note(f"provider {spec.slug}", "created")
        return
    changes = _changed(endpoint, values)
    new_credential = credential is not None and endpoint.get_credential() != credential
    # A credential given with a move to another host goes with it, changed or not: the service refuses a move
    # that would carry a stored credential elsewhere without it (parse already checked the same rule).
    if credential is not None and (new_credential or "base_url" in changes):
        changes_with_credential = {**changes, "credential": credential}
    else:
        changes_with_credential = changes
    if changes_with_credential:
        provider_endpoint_update(account=run.account, actor=run.actor, endpoint=endpoint,
                                 changes=changes_with_credential)
    run.note(f"provider {spec.slug}", _updated(changes) or ("updated credential of" if new_credential else None))


def _seat_step(run: _Run, spec: SeatIn) -> None:
    email = spec.email.lower()
    user = get_user_model().objects.filter(email__iexact=email).first()
    user_change = None
    if user is None:
        user = get_user_model().objects.create_user(username=email, email=email)
        user.set_unusable_password()
        user_change = "created"
    if spec.password_env and not user.check_password(run.environ[spec.password_env]):
        user.set_password(run.environ[spec.password_env])
        user_change = user_change or "updated password of"
    if user_change:
        user.save()
    seat_existed = run.account.seats.filter(user=user).exists()
    _, changed = seat_set(account=run.account, actor=run.actor, user=user, role=spec.role)
    seat_change = ("updated role" if seat_existed else "created") if changed else None
    run.note(f"seat {email}", seat_change or user_change)


def _key_step(run: _Run, spec: KeyIn) -> None:
    values: dict[str, Any] = {
        "environment": spec.environment,
        "allowed_models": spec.allowed_models,
        "expires_at": spec.expires_at,
        "requests_per_minute": spec.requests_per_minute,
        "tokens_per_minute": spec.tokens_per_minute,
        "max_concurrent": spec.max_concurrent,
    }
    key = ApiKey.objects.filter(account=run.account, name=spec.name).first()
    if key is None:
        _, plaintext = api_key_create(account=run.account, actor=run.actor, name=spec.name, plaintext=spec.key,
                                      **values)
        if spec.key is None:
            run.result.new_keys.append((run.account.slug, spec.name, plaintext))
        run.note(f"key {spec.name}", "created")
        return
    changes = _changed(key, values)
    if changes:
        api_key_update(account=run.account, actor=run.actor, key=key, changes=changes)
    replaced = spec.key is not None and key.key_hash != hash_key(spec.key)
    if spec.key is not None and replaced:
        api_key_replace(account=run.account, actor=run.actor, key=key, plaintext=spec.key)
    run.note(f"key {spec.name}", _updated([*changes, *(["key"] if replaced else [])]))


def _guardrails_step(run: _Run, key: ApiKey | None, spec: dict[str, Any] | None) -> None:
    """The account's default (`key` None) or a key's own guardrail policy; null in the file removes it."""
    what = f"guardrails of key {key.name}" if key is not None else "guardrails"
    stored = guardrail_policy_get(account=run.account, key=key)
    if spec is None:
        if stored is not None:
            guardrail_policy_delete(account=run.account, actor=run.actor, key=key)
            run.note(what, "deleted")
        return
    if stored is not None and stored.spec == spec:
        return
    guardrail_policy_put(account=run.account, actor=run.actor, key=key, spec=spec)
    run.note(what, "created" if stored is None else "updated")


def _channel_step(run: _Run, spec: AlertChannelIn) -> AlertChannel:
    name, url, emails = spec.resolved_name, spec.url or "", spec.to or []
    secret = spec.secret or (run.environ[spec.secret_env] if spec.secret_env else None)
    channel = AlertChannel.objects.filter(account=run.account, name=name).first()
    if channel is None:
        channel, _ = alert_channel_create(account=run.account, actor=run.actor, name=name, kind=spec.kind, url=url,
                                          emails=emails, secret=secret, event_types=spec.event_types)
        run.note(f"alert channel {name}", "created")
        return channel
    # Kind and url change together (a Slack URL is stored encrypted): compared decrypted.
    changed = [what for what, same in (("kind", channel.kind == spec.kind), ("url", channel.destination_url() == url),
                                       ("emails", channel.emails == emails)) if not same]
    changes: dict[str, Any] = {"kind": spec.kind, "url": url} if {"kind", "url"} & set(changed) else {}
    if "emails" in changed:
        changes["emails"] = emails
    if spec.event_types is not None and set(spec.event_types) != set(channel.event_types):
        changed.append("event_types")
        changes["event_types"] = spec.event_types
    new_secret = None
    if spec.kind == AlertChannel.Kind.WEBHOOK.value:
        if secret is None and not channel.secret_encrypted:
            secret = generate_webhook_secret()  # a webhook is always signed
        if secret is not None and channel.get_secret() != secret:
            new_secret = changes["secret"] = secret
    if changes:
        alert_channel_update(account=run.account, actor=run.actor, channel=channel, changes=changes)
    run.note(f"alert channel {name}", _updated(changed) or ("updated secret of" if new_secret else None))
    return channel


def _channel_ids(names: list[str] | None, channels: dict[str, AlertChannel]) -> list[int]:
    """No names means 'every channel of the account' (CONTRACT §6): stored as no explicit channels."""
    return sorted(channels[n].pk for n in names or [])


def _changes_with_channels(
    obj: Budget | AlertRule, values: dict[str, Any], channel_ids: list[int]
) -> tuple[dict[str, Any], bool]:
    """The fields that differ from the file, and whether its channels do (then as `channel_ids`)."""
    changes = _changed(obj, values)
    new_channels = sorted(obj.channels.values_list("pk", flat=True)) != channel_ids
    if new_channels:
        changes["channel_ids"] = channel_ids
    return changes, new_channels


def _budget_step(run: _Run, spec: BudgetIn, channels: dict[str, AlertChannel]) -> None:
    values: dict[str, Any] = {"limit_usd": spec.limit_usd, "hard": spec.hard, "alert_at": spec.alert_at,
                              "on_exceed": spec.on_exceed, "downgrade_to": spec.downgrade_to,
                              "downgrade_at": spec.downgrade_at}
    channel_ids = _channel_ids(spec.channels, channels)
    label = f"budget {spec.scope}{' ' + spec.match if spec.match else ''}/{spec.period}"
    budget = Budget.objects.filter(account=run.account, scope=spec.scope, match=spec.match,
                                   period=spec.period).first()
    if budget is None:
        budget_create(account=run.account, actor=run.actor, scope=spec.scope, match=spec.match, period=spec.period,
                      channel_ids=channel_ids, **values)
        run.note(label, "created")
        return
    changes, new_channels = _changes_with_channels(budget, values, channel_ids)
    if changes:
        budget_update(account=run.account, actor=run.actor, budget=budget, changes=changes)
    run.note(label, "updated channels of" if new_channels else _updated(changes))


def _rule_step(run: _Run, spec: AlertRuleIn, channels: dict[str, AlertChannel]) -> None:
    values: dict[str, Any] = {
        "window_minutes": spec.window_minutes, "multiplier": spec.multiplier, "floor_usd": spec.floor_usd
    }
    channel_ids = _channel_ids(spec.channels, channels)
    label = f"alert rule {spec.kind} {spec.scope} {spec.match}"
    rule = AlertRule.objects.filter(account=run.account, kind=spec.kind, scope=spec.scope, match=spec.match).first()
    if rule is None:
        alert_rule_create(account=run.account, actor=run.actor, kind=spec.kind, scope=spec.scope, match=spec.match,
                          channel_ids=channel_ids, **values)
        run.note(label, "created")
        return
    changes, new_channels = _changes_with_channels(rule, values, channel_ids)
    if changes:
        alert_rule_update(account=run.account, actor=run.actor, rule=rule, changes=changes)
    run.note(label, "updated channels of" if new_channels else _updated(changes))


def _price_step(run: _Run, spec: PriceIn) -> None:
    prices = {
        "input_per_mtok": spec.input_per_mtok,
        "output_per_mtok": spec.output_per_mtok,
        "cached_input_per_mtok": spec.cached_input_per_mtok,
        "cache_write_per_mtok": spec.cache_write_per_mtok,
    }
    existed = run.account.price_overrides.filter(provider=spec.provider, model=spec.model).exists()
    _, changed = price_override_set(account=run.account, actor=run.actor, provider=spec.provider, model=spec.model,
                                    prices=prices)
    run.note(f"price {spec.provider}/{spec.model}", _updated(changed) if existed else "created")


def _route_step(run: _Run, spec: RouteIn) -> None:
    values: dict[str, Any] = {
        "strategy": spec.strategy, "targets": spec.stored_targets(), "max_attempts": spec.max_attempts,
        "deadline_seconds": spec.deadline_seconds, "retries": spec.retries, "backoff_ms": spec.backoff_ms,
        "cache_ttl_seconds": spec.cache_ttl_seconds, "cache_nonzero_temperature": spec.cache_nonzero_temperature,
    }
    route = Route.objects.filter(account=run.account, name=spec.name).first()
    if route is None:
        route_create(account=run.account, actor=run.actor, name=spec.name, **values)
        run.note(f"route {spec.name}", "created")
        return
    changes = _changed(route, values)
    if changes:
        route_update(account=run.account, actor=run.actor, route=route, changes=changes)
    run.note(f"route {spec.name}", _updated(changes))

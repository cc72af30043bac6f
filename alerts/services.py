"""Write-side actions on alert channels and alert rules."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q

from alerts.models import SUBSCRIBABLE_TYPES, AlertChannel, AlertRule, generate_webhook_secret
from alerts.selectors import alert_channels_by_id
from billing.models import Account, Plan
from tokonomics.audit import Actor, audit_record, snapshot
from tokonomics.outbound_urls import url_problem
from tokonomics.validation import ensure_unique

# `kind` changes only from a config file (the REST API's PATCH has no kind: create another channel instead).
CHANNEL_FIELDS = frozenset({"name", "kind", "url", "emails", "secret", "enabled", "event_types"})
RULE_FIELDS = frozenset({"scope", "match", "window_minutes", "multiplier", "floor_usd", "channel_ids", "enabled"})
# Where Slack's incoming webhooks (and workflow triggers) live: a Slack channel posts nowhere else.
SLACK_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
SLACK_PATHS = ("/services/", "/workflows/", "/triggers/")


def slack_url_problem(url: str) -> str | None:
    """Why `url` is not a Slack incoming-webhook URL, or None. The web app's form asks it; the API and config
    files may still point a Slack-format channel at a Slack-compatible receiver (Mattermost, a test double)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or (parts.hostname or "") not in SLACK_HOSTS or not parts.path.startswith(SLACK_PATHS):
        return ("is not a Slack incoming-webhook URL (https://hooks.slack.com/services/…); for another service "
                "choose the webhook kind")
    return None
MIN_SECRET_BYTES = 16


def _secret_problem(secret: str) -> str | None:
    """Webhook secrets are `whsec_` + base64 (CONTRACT §6): the notifier signs with the decoded bytes."""
    if not secret.startswith("whsec_"):
        return "must start with whsec_ followed by base64 of random bytes (leave it out to have one generated)"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "the part after whsec_ is not valid base64"
    if len(key) < MIN_SECRET_BYTES:
        return f"must encode at least {MIN_SECRET_BYTES} random bytes, not {len(key)}"
    return None


def _channel_problems(channel: AlertChannel, secret: str | None) -> dict[str, str]:
    problems: dict[str, str] = {}
    if channel.kind == AlertChannel.Kind.EMAIL:
        if not channel.emails:
            problems["emails"] = "an email channel needs at least one address"
        for address in channel.emails:
            try:
                validate_email(address)
            except ValidationError:
                problems["emails"] = f"{address!r} is not an email address"
        if channel.url:
            problems["url"] = "an email channel sends to emails, not to a url"
    else:
        if not channel.url:
            problems["url"] = f"a {channel.kind} channel needs a url"
        elif problem := url_problem(channel.destination_url()):
            problems["url"] = problem
        if channel.emails:
            problems["emails"] = f"a {channel.kind} channel posts to its url; leave emails empty"
    # Names a client sent are data: each one shown cut short, and only the first few.
    unknown = sorted(str(t)[:40] for t in channel.event_types if t not in SUBSCRIBABLE_TYPES)
    if unknown:
        problems["event_types"] = f"unknown event types {unknown[:5]}; choose from {', '.join(SUBSCRIBABLE_TYPES)}"
    if secret is not None and channel.kind != AlertChannel.Kind.WEBHOOK:
        problems["secret"] = "only webhook channels are signed"  # noqa: S105 -- an error message, no secret
    elif secret is not None and (problem := _secret_problem(secret)):
        problems["secret"] = problem
    return problems


def _event_types_clean(event_types: Sequence[str]) -> list[str]:
    """Subscribed types in their documented order, each once (what is unknown stays, for the error to name)."""
    chosen = set(event_types)
    return [t for t in SUBSCRIBABLE_TYPES if t in chosen] + sorted(t for t in chosen if t not in SUBSCRIBABLE_TYPES)


def _channel_save(channel: AlertChannel, secret: str | None) -> AlertChannel:
    problems = _channel_problems(channel, secret)
    if problems:
        raise ValidationError(problems)
    channel.full_clean(validate_unique=False, validate_constraints=False)
    ensure_unique(
        AlertChannel.objects.filter(account=channel.account, name=channel.name),
        instance=channel,
        field="name",
        message=f"this account already has an alert channel named {channel.name!r}",
    )
    if secret is not None:
        channel.set_secret(secret)
    channel.save()
    return channel


def _owned(obj: AlertChannel | AlertRule, account: Account) -> None:
    # The audit entry goes to `account`: it must be the object's own.
    if obj.account_id != account.pk:
        raise ValueError(f"{obj!r} is not in account {account.slug!r}")


def alert_channel_create(
    *,
    account: Account,
    actor: Actor,
    name: str,
    kind: str,
    url: str = "",
    emails: Sequence[str] = (),
    secret: str | None = None,
    event_types: Sequence[str] | None = None,
) -> tuple[AlertChannel, str | None]:
    """A new channel, and the webhook secret generated for it when none was given (show it once), else None."""
    generated = None
    if kind == AlertChannel.Kind.WEBHOOK and not secret:
        secret = generated = generate_webhook_secret()
    channel = AlertChannel(account=account, name=name, emails=list(emails))
    if event_types is not None:
        channel.event_types = _event_types_clean(event_types)
    channel.set_url(url, kind=kind)
    with transaction.atomic():
        _channel_save(channel, secret)
        audit_record(account=account, actor=actor, action="alert_channel.created", target=channel.name,
                     after=snapshot(channel))
    return channel, generated


def alert_channel_update(
    *, account: Account, actor: Actor, channel: AlertChannel, changes: Mapping[str, Any]
) -> AlertChannel:
    """Apply a partial update (any of CHANNEL_FIELDS). A Slack channel's url sent back as read (masked) leaves it
    unchanged. A new webhook secret is logged as `secret_changed`, without its value."""
    _owned(channel, account)
    unknown = set(changes) - CHANNEL_FIELDS
    if unknown:
        raise ValueError(f"not alert channel fields: {sorted(unknown)}")
    before, old_name = snapshot(channel), channel.name
    secret_changed = changes.get("secret") is not None and changes["secret"] != channel.get_secret()
    for name in ("name", "emails", "enabled"):
        if name in changes:
            setattr(channel, name, changes[name])
    if changes.get("event_types") is not None:
        channel.event_types = _event_types_clean(changes["event_types"])
    if "url" in changes or "kind" in changes:
        channel.set_url(changes.get("url", channel.url), kind=changes.get("kind"))
    with transaction.atomic():
        _channel_save(channel, changes.get("secret"))
        after = snapshot(channel)
        if secret_changed:
            before, after = {**before, "secret_changed": False}, {**after, "secret_changed": True}
        audit_record(account=account, actor=actor, action="alert_channel.updated", target=old_name, before=before,
                     after=after)
    return channel


def alert_channel_delete(*, account: Account, actor: Actor, channel: AlertChannel) -> None:
    _owned(channel, account)
    with transaction.atomic():
        audit_record(account=account, actor=actor, action="alert_channel.deleted", target=channel.name,
                     before=snapshot(channel))
        channel.delete()


def _rule_limit_message(plan: Plan, count: int) -> str:
    roomier = Plan.objects.filter(Q(max_alert_rules__isnull=True) | Q(max_alert_rules__gt=plan.max_alert_rules))
    names = ", ".join(p.name for p in roomier) or "a larger plan"
    return (
        f"Your {plan.name} plan allows {plan.max_alert_rules} alert rules and this account has {count}. "
        f"Delete a rule you no longer need, or move the account to a plan with more ({names})."
    )


def _rule_target(rule: AlertRule) -> str:
    """The rule's identity (one per kind, scope and match): not its thresholds, which change."""
    return f"{rule.kind} {rule.scope} {rule.match}"


def _rule_snapshot(rule: AlertRule) -> dict[str, Any]:
    return {**snapshot(rule), "channels": sorted(rule.channels.values_list("name", flat=True))}


def _rule_save(rule: AlertRule, channel_ids: Sequence[int] | None) -> AlertRule:
    rule.full_clean(validate_unique=False, validate_constraints=False)
    ensure_unique(
        AlertRule.objects.filter(account=rule.account, kind=rule.kind, scope=rule.scope, match=rule.match),
        instance=rule,
        field="match",
        message=f"this account already has a {rule.kind} rule on {rule.scope} {rule.match!r}; change that one",
    )
    channels = None if channel_ids is None else alert_channels_by_id(account=rule.account, channel_ids=channel_ids)
    rule.save()
    if channels is not None:
        rule.channels.set(channels)
    return rule


def alert_rule_create(
    *,
    account: Account,
    actor: Actor,
    scope: str,
    kind: str = AlertRule.Kind.BURN_RATE,
    match: str = "*",
    window_minutes: int = 15,
    multiplier: Decimal = Decimal(5),
    floor_usd: Decimal = Decimal(1),
    channel_ids: Sequence[int] = (),
) -> AlertRule:
    """A new burn-rate rule, within the plan's `max_alert_rules`. No `channel_ids`: every channel is alerted."""
    with transaction.atomic():
        # Locking the account serialises concurrent creations, so two of them cannot both take the last slot.
        locked = Account.objects.select_for_update().select_related("plan").get(pk=account.pk)
        limit = locked.plan.max_alert_rules
        count = AlertRule.objects.filter(account=account).count()
        if limit is not None and count >= limit:
            raise PermissionDenied(_rule_limit_message(locked.plan, count))
        rule = AlertRule(
            account=account,
            kind=kind,
            scope=scope,
            match=match,
            window_minutes=window_minutes,
            multiplier=multiplier,
            floor_usd=floor_usd,
        )
        _rule_save(rule, channel_ids)
        audit_record(account=account, actor=actor, action="alert_rule.created", target=_rule_target(rule),
                     after=_rule_snapshot(rule))
        return rule


def alert_rule_update(*, account: Account, actor: Actor, rule: AlertRule, changes: Mapping[str, Any]) -> AlertRule:
    """Apply a partial update (any of RULE_FIELDS); the result is validated whole."""
    _owned(rule, account)
    unknown = set(changes) - RULE_FIELDS
    if unknown:
        raise ValueError(f"not alert rule fields: {sorted(unknown)}")
    before, target = _rule_snapshot(rule), _rule_target(rule)
    for name, value in changes.items():
        if name != "channel_ids":
            setattr(rule, name, value)
    with transaction.atomic():
        _rule_save(rule, changes.get("channel_ids"))
        audit_record(account=account, actor=actor, action="alert_rule.updated", target=target, before=before,
                     after=_rule_snapshot(rule))
    return rule


def alert_rule_delete(*, account: Account, actor: Actor, rule: AlertRule) -> None:
    _owned(rule, account)
    with transaction.atomic():
        audit_record(account=account, actor=actor, action="alert_rule.deleted", target=_rule_target(rule),
                     before=_rule_snapshot(rule))
        rule.delete()

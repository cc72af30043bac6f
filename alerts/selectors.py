"""Read-side queries of alerts, each scoped to one account."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from alerts.models import AlertChannel, AlertRule
from billing.models import Account


def alert_channel_list(*, account: Account) -> QuerySet[AlertChannel]:
    return AlertChannel.objects.filter(account=account).order_by("id")


def alert_channel_get(*, account: Account, channel_id: int) -> AlertChannel:
    channel = alert_channel_list(account=account).filter(pk=channel_id).first()
    if channel is None:
        raise Http404(f"No alert channel {channel_id} in this account.")
    return channel


def alert_channels_by_id(*, account: Account, channel_ids: Sequence[int]) -> list[AlertChannel]:
    """The account's channels with these ids; a ValidationError on `channel_ids` names any that are not."""
    channels = list(alert_channel_list(account=account).filter(pk__in=channel_ids))
    missing = sorted(set(channel_ids) - {channel.pk for channel in channels})
    if missing:
        ids = ", ".join(map(str, missing))
        raise ValidationError({"channel_ids": f"no alert channel with id {ids} in this account"})
    return channels


def alert_rule_list(*, account: Account) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(account=account).prefetch_related("channels").order_by("id")


def alert_rule_get(*, account: Account, rule_id: int) -> AlertRule:
    rule = alert_rule_list(account=account).filter(pk=rule_id).first()
    if rule is None:
        raise Http404(f"No alert rule {rule_id} in this account.")
    return rule

"""Read-side queries of billing, each scoped to one account."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.http import Http404
from django.utils import timezone

from billing.models import Account, Budget, UsageRecord
from billing.models_tokens import ManagementToken
from billing.pricing import NANO_USD
from billing.tokens import hash_token, is_well_formed

GroupBy = Literal["feature", "tenant", "model", "provider", "key", "environment", "day", "hour"]
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


def management_token_get_active(*, plaintext: str) -> ManagementToken | None:
    """The live (not revoked, not expired) token with this plaintext, its account loaded, or None."""
    if not is_well_formed(plaintext):
        return None
    token = (
        ManagementToken.objects.select_related("account", "account__plan")
        .filter(token_hash=hash_token(plaintext))
        .first()
    )
    if token is None or not token.is_active_at(timezone.now()):
        return None
    return token


def budget_list(*, account: Account) -> QuerySet[Budget]:
    return Budget.objects.filter(account=account).prefetch_related("channels").order_by("id")


def budget_get(*, account: Account, budget_id: int) -> Budget:
    budget = budget_list(account=account).filter(pk=budget_id).first()
    if budget is None:
        raise Http404(f"No budget {budget_id} in this account.")
    return budget


@dataclass(frozen=True)
class UsageFilters:
    """Narrows usage to the calls matching every attribute given (None: any value)."""

    feature: str | None = None
    tenant: str | None = None
    model: str | None = None
    provider: str | None = None
    key_id: int | None = None
    environment: str | None = None
    status: str | None = None  # an exact code ("429") or a class ("4xx")


def _usage_records(
    *, account: Account, since: datetime | None, until: datetime | None, filters: UsageFilters
) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(account=account)
    if since is not None:
        records = records.filter(created_at__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=until)
    exact = {
        "feature": filters.feature,
        "tenant": filters.tenant,
        "model": filters.model,
        "provider": filters.provider,
        "key_id": filters.key_id,
        "environment": filters.environment,
    }
    records = records.filter(**{name: value for name, value in exact.items() if value is not None})
    if filters.status is not None:
        if filters.status.endswith("xx"):
            low = int(filters.status[0]) * 100
            records = records.filter(status_code__gte=low, status_code__lt=low + 100)
        else:
            records = records.filter(status_code=int(filters.status))
    return records


def usage_record_list(
    *,
    account: Account,
    since: datetime | None,
    until: datetime | None,
    filters: UsageFilters,
    after: tuple[datetime, int] | None = None,
    limit: int,
) -> list[UsageRecord]:
    """Up to `limit` records, newest first; `after` is the (created_at, id) of the last record already seen.

    `since` is inclusive, `until` exclusive.
    """
    records = _usage_records(account=account, since=since, until=until, filters=filters).select_related("key")
    if after is not None:
        created_at, record_id = after
        records = records.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=record_id))
    return list(records.order_by("-created_at", "-id")[:limit])


@dataclass(frozen=True)
class UsageAggregate:
    """Usage summed over one group. `cost_usd` covers priced calls only; `unknown_cost_requests` counts the rest."""

    group: str | None
    key_id: int | None
    requests: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal
    unknown_cost_requests: int


def usage_aggregate_list(
    *, account: Account, group_by: GroupBy, since: datetime | None, until: datetime | None, filters: UsageFilters
) -> list[UsageAggregate]:
    """Usage of `account` between `since` (inclusive) and `until` (exclusive), summed per `group_by` value.

    Days and hours are calendar days and hours in the account's time zone. Time groups come in order;
    other groups by cost, dearest first. A group of None holds the calls without that attribute.
    """
    # The one place that reads aggregates: when hourly rollups exist, only this body changes.
    tz = zoneinfo.ZoneInfo(account.timezone)
    group_expression = {
        "feature": F("feature"),
        "tenant": F("tenant"),
        "model": F("model"),
        "provider": F("provider"),
        "key": F("key_id"),
        "environment": F("environment"),
        "day": TruncDay("created_at", tzinfo=tz),
        "hour": TruncHour("created_at", tzinfo=tz),
    }[group_by]
    rows = list(
        _usage_records(account=account, since=since, until=until, filters=filters)
        .annotate(group=group_expression)
        .values("group")
        .annotate(
            requests=Count("id"),
            unknown_cost_requests=Count("id", filter=Q(cost_usd__isnull=True)),
            cost_usd=Sum("cost_usd"),
            **{name: Sum(name) for name in TOKEN_FIELDS},
        )
        .order_by()
    )
    if group_by in ("day", "hour"):
        rows.sort(key=lambda row: row["group"])
    else:
        rows.sort(key=lambda row: (-(row["cost_usd"] or 0), row["group"] in ("", None), str(row["group"] or "")))
    key_names = dict(account.api_keys.values_list("id", "name")) if group_by == "key" else {}
    return [
        UsageAggregate(
            group=_group_label(group_by, row["group"], key_names),
            key_id=row["group"] if group_by == "key" else None,
            requests=row["requests"],
            cost_usd=(row["cost_usd"] or Decimal(0)).quantize(NANO_USD),
            unknown_cost_requests=row["unknown_cost_requests"],
            **{name: int(row[name] or 0) for name in TOKEN_FIELDS},
        )
        for row in rows
    ]


def _group_label(group_by: GroupBy, value: object, key_names: dict[int, str]) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date().isoformat() if group_by == "day" else value.isoformat()
    if group_by == "key":
        return key_names.get(value, str(value))  # type: ignore[call-overload]
    return str(value)

"""The call log: one account's usage records, filtered, searched, and paged newest first by keyset on
(created_at, id) — never OFFSET, which reads and throws away every row before the page."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta

from django.db.models import Max, Min, Q, QuerySet, Value

from billing.models import Account, RequestIdHash, UsageRecord, UsageSummaryDayRollup, UsageTenantDayRollup
from billing.usage.rollups import rollup_for

PAGE_SIZE = 50
STATUSES = ("ok", "denied", "error")
EXACT_FILTERS = ("key", "feature", "tenant", "session", "environment", "model", "provider")
LAST = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
SEARCH_MAX_CHARS = 200  # the longest feature, tenant or model; request ids are 40
# A prefix search becomes a list of the values it matches, read from the day rollups (a few thousand rows
# where the records are millions) and capped, so the records are then read by exact value.
SEARCH_MAX_VALUES = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CallFilterError(ValueError):
    """A filter the call log cannot apply (a 400 with this message)."""


@dataclass(frozen=True)
class CallFilters:
    """What narrows the call log; None: anything. `since` inclusive, `until` exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    key: str | None = None  # the key's name
    feature: str | None = None
    tenant: str | None = None
    session: str | None = None  # an agent run's id (X-Tokonomics-Session)
    environment: str | None = None
    model: str | None = None
    provider: str | None = None
    status: str | None = None  # one of STATUSES
    search: str | None = None  # a request id, or the start of a feature, tenant or model

    def active(self) -> dict[str, str]:
        """The filters set, as text (for chips and the export's file name)."""
        out = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                out[field.name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the (created_at, id) of its last call. As text: microseconds since 1970, '-', id."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        return f"{(self.created_at - _EPOCH) // timedelta(microseconds=1)}-{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        micros, _, record_id = text.partition("-")
        if not (micros.isascii() and micros.isdigit() and record_id.isascii() and record_id.isdigit()
                and len(micros) <= 18 and len(record_id) <= 19):
            raise CallFilterError(f"after={text[:40]!r} is not a position in the call log")
        try:
            return cls(_EPOCH + timedelta(microseconds=int(micros)), int(record_id))
        except OverflowError:
            raise CallFilterError(f"after={text[:40]!r} is not a position in the call log") from None


@dataclass(frozen=True)
class CallPage:
    calls: list[UsageRecord]
    next: Cursor | None  # None: this is the last page


def call_filters_parse(params: Mapping[str, str], *, timezone: str, now: datetime | None = None) -> CallFilters:
    """The filters of a query string. Dates (`since`, `until`, both inclusive) are days of the account's time
    zone; `last` (24h, 7d, 30d, 90d) counts back from now and wins over them."""
    zone = zoneinfo.ZoneInfo(timezone)
    now = now or datetime.now(UTC)
    since = until = None
    last = params.get("last", "")
    if last:
        if last not in LAST:
            raise CallFilterError(f"last={last[:20]!r}: choose one of {', '.join(LAST)}")
        since = now - LAST[last]
    else:
        if params.get("since"):
            since = _day_start(params["since"], zone, "since")
        if params.get("until"):
            until = _day_start(params["until"], zone, "until", next_day=True)
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise CallFilterError(f"status={status[:20]!r}: choose one of {', '.join(STATUSES)}")
    exact = {}
    for name in EXACT_FILTERS:
        value = params.get(name, "")
        if len(value) > SEARCH_MAX_CHARS:
            raise CallFilterError(f"{name}: at most {SEARCH_MAX_CHARS} characters")
        if value:
            exact[name] = value
    search = params.get("q", "").strip()
    if len(search) > SEARCH_MAX_CHARS:
        raise CallFilterError(f"search: at most {SEARCH_MAX_CHARS} characters")
    return CallFilters(since=since, until=until, status=status, search=search or None, **exact)


def _day_start(text: str, zone: zoneinfo.ZoneInfo, name: str, *, next_day: bool = False) -> datetime:
    try:
        day = date.fromisoformat(text)
        if next_day:
            day += timedelta(days=1)
    except (ValueError, OverflowError):
        raise CallFilterError(f"{name}={text[:20]!r} is not a date (YYYY-MM-DD)") from None
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _calls(*, account: Account, filters: CallFilters) -> QuerySet[UsageRecord]:
    calls = UsageRecord.objects.filter(account=account)
    if filters.since is not None:
        calls = calls.filter(created_at__gte=filters.since)
    if filters.until is not None:
        calls = calls.filter(created_at__lt=filters.until)
    dimensions = {name: getattr(filters, name) for name in EXACT_FILTERS
                  if name != "key" and getattr(filters, name) is not None}
    if filters.key is not None:
        key_id = account.api_keys.filter(name=filters.key).values_list("id", flat=True).first()
        if key_id is None:
            return calls.none()  # no key of that name (any more): a deleted key's calls lost their key
        dimensions["key_id"] = key_id
    calls = calls.filter(**dimensions)
    rollup_dimensions = {name: value for name, value in dimensions.items() if name != "session"}
    if rollup_dimensions:
        # Records are indexed by account and time alone: PostgreSQL walks an account's calls back from now
        # expecting the filtered ones spread evenly over time, so for a key, feature or tenant last used long
        # ago it would read millions of rows before the first. The rollups know the hours that hold such calls:
        # the walk starts at the newest and stops at the oldest.
        hours = rollup_for(rollup_dimensions).hourly._default_manager.filter(account=account, **rollup_dimensions)
        span = hours.aggregate(first=Min("hour"), last=Max("hour"))
        if span["last"] is None:
            return calls.none()
        calls = calls.filter(created_at__gte=span["first"], created_at__lt=span["last"] + timedelta(hours=1))
    if filters.status == "ok":
        calls = calls.filter(status_code__lt=400)
    elif filters.status == "denied":
        calls = calls.exclude(denied_scope="")
    elif filters.status == "error":
        calls = calls.filter(status_code__gte=400, denied_scope="")
    if filters.search is not None:
        calls = calls.filter(_search(account=account, text=filters.search))
    return calls


def _search(*, account: Account, text: str) -> Q:
    """A request id, exactly (the unique index answers); else the calls whose feature, tenant or model starts
    with `text`, as at most SEARCH_MAX_VALUES values of each found in the day rollups."""
    # Found through usage_request_once (the hash of the id), then named by primary key and time: the call
    # list's own query then reads those rows alone instead of comparing every call's request id.
    exactly = list(UsageRecord.objects.alias(hashed=RequestIdHash("request_id")).filter(
        account=account, hashed=RequestIdHash(Value(text)), request_id=text).values_list("pk", "created_at"))
    if exactly:
        return Q(pk__in=[pk for pk, _ in exactly], created_at__in=[at for _, at in exactly])
    condition = Q(pk__in=[])
    for name, rollup in (("feature", UsageSummaryDayRollup), ("model", UsageSummaryDayRollup),
                         ("tenant", UsageTenantDayRollup)):
        values = list(rollup.objects.filter(account=account, **{f"{name}__startswith": text})
                      .order_by(name).values_list(name, flat=True).distinct()[:SEARCH_MAX_VALUES])
        if values:
            condition |= Q(**{f"{name}__in": values})
    return condition


def call_list(*, account: Account, filters: CallFilters, after: Cursor | None = None,
              limit: int = PAGE_SIZE) -> CallPage:
    """Up to `limit` calls of `account` matching `filters`, newest first, after the cursor `after`."""
    return _page(_calls(account=account, filters=filters).select_related("key"), after=after, limit=limit)


def _page(calls: QuerySet[UsageRecord], *, after: Cursor | None, limit: int) -> CallPage:
    if after is not None:
        # created_at <= t bounds the index scan; the rest breaks the ties between equal timestamps by id.
        calls = calls.filter(Q(created_at__lt=after.created_at) | Q(created_at=after.created_at, id__lt=after.id),
                             created_at__lte=after.created_at)
    rows = list(calls.order_by("-created_at", "-id")[:limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return CallPage(rows, Cursor(rows[-1].created_at, rows[-1].pk) if more else None)


def call_chunks(*, account: Account, filters: CallFilters, size: int = 2000) -> Iterator[list[UsageRecord]]:
    """Every call matching `filters`, newest first, in keyset pages of `size` (an export's rows). The filters
    are resolved once (the key's id, the search's values), so every chunk reads the same selection."""
    calls = _calls(account=account, filters=filters).select_related("key")
    after = None
    while True:
        page = _page(calls, after=after, limit=size)
        if page.calls:
            yield page.calls
        if page.next is None:
            return
        after = page.next


def call_get(*, account: Account, call_id: int) -> UsageRecord | None:
    """One call of `account` (None for another account's, or none)."""
    return UsageRecord.objects.select_related("key").filter(account=account, pk=call_id).first()

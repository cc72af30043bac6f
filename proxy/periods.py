"""Calendar periods in an account's time zone: the one source of period bounds for
enforcement, alerts and dashboards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

TOTAL_START = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _localize(naive: datetime, zone: ZoneInfo) -> datetime:
    # Calendar boundaries are wall-clock midnights; fold=0 picks the first one on a DST repeat.
    return naive.replace(tzinfo=zone)


def period_bounds(period: str, timezone_name: str, now: datetime) -> tuple[datetime, datetime | None]:
    """[start, end) of the period containing `now`, as aware datetimes; `total` has no end."""
    if period == "total":
        return TOTAL_START, None
    zone = _zone(timezone_name)
    local = now.astimezone(zone).replace(tzinfo=None)
    if period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        # Hours are counted in absolute time so a DST shift never makes a 0- or 2-hour period.
        start_utc = _localize(start, zone).astimezone(UTC)
        return start_utc, start_utc + timedelta(hours=1)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = midnight, midnight + timedelta(days=1)
    elif period == "week":  # ISO weeks start on Monday
        start = midnight - timedelta(days=midnight.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = midnight.replace(day=1)
        end = _add_months(start, 1)
    elif period == "quarter":
        start = midnight.replace(month=3 * ((midnight.month - 1) // 3) + 1, day=1)
        end = _add_months(start, 3)
    else:
        raise ValueError(f"unknown period {period!r}")
    return _localize(start, zone), _localize(end, zone)


def _add_months(first_of_month: datetime, months: int) -> datetime:
    index = first_of_month.month - 1 + months
    return first_of_month.replace(year=first_of_month.year + index // 12, month=index % 12 + 1)

"""Calendar periods in the account's time zone, and the counter keys built on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.directory import BudgetEntry
from proxy.periods import TOTAL_START, period_bounds
from proxy.quota import Quota
from proxy.redis_pipeline import PipelinedRedis

from ..support import account_entry, key_entry

NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
ZONES = ("UTC", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham",
         "America/Santiago", "Europe/London")
PERIODS = ("hour", "day", "week", "month", "quarter")


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)


def hours(start: datetime, end: datetime | None) -> float:
    # Not end - start: Python subtracts two datetimes of one zone on the wall clock, ignoring DST.
    assert end is not None
    return (end.timestamp() - start.timestamp()) / 3600


def test_month_rollover_in_sydney() -> None:
    # 13:59:59 UTC on 31 January is 00:59:59 on 1 February in Sydney (daylight time, UTC+11).
    before = datetime(2026, 1, 31, 12, 59, 59, tzinfo=UTC)
    after = datetime(2026, 1, 31, 13, 0, 0, tzinfo=UTC)
    assert period_bounds("month", "Australia/Sydney", before) == (local(SYDNEY, 2026, 1, 1), local(SYDNEY, 2026, 2, 1))
    assert period_bounds("month", "Australia/Sydney", after) == (local(SYDNEY, 2026, 2, 1), local(SYDNEY, 2026, 3, 1))
    assert local(SYDNEY, 2026, 2, 1) == after


def test_month_rollover_in_new_york() -> None:
    start, end = period_bounds("month", "America/New_York", datetime(2026, 3, 1, 4, 59, tzinfo=UTC))
    assert (start, end) == (local(NEW_YORK, 2026, 2, 1), local(NEW_YORK, 2026, 3, 1))
    assert end == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)  # EST, UTC-5
    # March holds the switch to daylight time: 31 days less one hour.
    start, end = period_bounds("month", "America/New_York", end)
    assert hours(start, end) == 31 * 24 - 1


def test_days_around_daylight_saving_changes_last_23_and_25_hours() -> None:
    spring = period_bounds("day", "America/New_York", local(NEW_YORK, 2026, 3, 8, 12))
    autumn = period_bounds("day", "America/New_York", local(NEW_YORK, 2026, 11, 1, 12))
    assert (hours(*spring), hours(*autumn)) == (23, 25)


def test_the_repeated_hour_is_two_hours() -> None:
    first = local(NEW_YORK, 2026, 11, 1, 1, 30)
    second = local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1)  # the same wall time, an hour later
    a, b = period_bounds("hour", "America/New_York", first), period_bounds("hour", "America/New_York", second)
    assert a[1] == b[0] and hours(*a) == hours(*b) == 1
    assert a[0] == datetime(2026, 11, 1, 5, 0, tzinfo=UTC) and b[0] == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def test_a_day_that_starts_at_one_because_midnight_never_happened() -> None:
    # Santiago springs forward at midnight: 7 September 2025 starts at 01:00 local.
    start, end = period_bounds("day", "America/Santiago", datetime(2025, 9, 7, 12, tzinfo=UTC))
    assert start.timestamp() == datetime(2025, 9, 7, 4, tzinfo=UTC).timestamp() and hours(start, end) == 23


def test_weeks_start_on_monday_and_quarters_on_the_first_month() -> None:
    start, end = period_bounds("week", "Asia/Kolkata", datetime(2026, 1, 1, 12, tzinfo=UTC))  # a Thursday
    assert start == local(ZoneInfo("Asia/Kolkata"), 2025, 12, 29) and hours(start, end) == 7 * 24
    start, end = period_bounds("quarter", "Europe/London", datetime(2026, 6, 30, 23, 30, tzinfo=UTC))
    assert (start, end) == (local(ZoneInfo("Europe/London"), 2026, 7, 1), local(ZoneInfo("Europe/London"), 2026, 10, 1))


def test_total_never_ends() -> None:
    assert period_bounds("total", "Australia/Sydney", datetime.now(UTC)) == (TOTAL_START, None)


def test_unknown_period_is_refused() -> None:
    with pytest.raises(ValueError):
        period_bounds("fortnight", "UTC", datetime.now(UTC))


instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(instant=instants, zone=st.sampled_from(ZONES), period=st.sampled_from(PERIODS))
def test_periods_contain_now_and_tile_time(instant: datetime, zone: str, period: str) -> None:
    start, end = period_bounds(period, zone, instant)
    assert end is not None and start <= instant < end
    assert period_bounds(period, zone, end)[0] == end  # the next period starts where this one ends
    assert period_bounds(period, zone, end - timedelta(microseconds=1)) == (start, end)
    if period != "hour":
        wall = start.astimezone(ZoneInfo(zone))
        assert (wall.hour, wall.minute) in ((0, 0), (1, 0))  # midnight, or 01:00 where midnight was skipped


# --- counter keys roll over with the period ---------------------------------------------------

ACCOUNT = account_entry(9, timezone="Australia/Sydney", budgets=(
    BudgetEntry(5, "account", "", "month", 10, True), BudgetEntry(6, "tenant", "*", "total", 10, True)))
KEY = key_entry(1, account_id=9)


def test_counter_keys_roll_over_at_the_local_month_boundary_and_expire_after_it() -> None:
    quota = Quota(PipelinedRedis("redis://127.0.0.1:1/0", timeout=1), reservation_ttl_ms=1000)  # never connects
    boundary = local(SYDNEY, 2026, 2, 1).timestamp()
    january, february = (quota.counters_for(ACCOUNT, KEY, feature="", tenant="acme", now=boundary + d)
                         for d in (-0.001, 0))
    assert january[0].key == f"tk:{{a:9}}:b2:5:{int(local(SYDNEY, 2026, 1, 1).timestamp())}"
    assert february[0].key == f"tk:{{a:9}}:b2:5:{int(boundary)}"
    assert (january[0].reset_at, january[0].expire_at) == (int(boundary), int(boundary) + 86400)
    # A total budget's counter never rolls over, never expires, never resets.
    assert january[1].key == february[1].key == "tk:{a:9}:b2:6:0:acme"
    assert (february[1].expire_at, february[1].reset_at) == (0, 0)
    # The clock going back (a frozen clock in a test, NTP) gets the earlier period again, not a stale one.
    assert quota.counters_for(ACCOUNT, KEY, feature="", tenant="acme", now=boundary - 1)[0].key == january[0].key

"""What an upstream reports, and what a client names, stay data: bounded counts, distinct tenants."""

from __future__ import annotations

import pytest

from proxy.providers.base import count
from proxy.usage_bounds import MAX_TOKENS, text_clean


@pytest.mark.parametrize("value", [-5, -1e20, float("nan"), float("inf"), float("-inf"), 1e308, 10**30])
def test_a_count_an_upstream_reports_is_never_negative_or_astronomic(value: float) -> None:
    # Any account may point an endpoint at its own server: a negative count once broke the budget scripts'
    # token log for every later call of the key, and tripped the breaker of the whole process.
    assert 0 <= count({"n": value}, "n") <= MAX_TOKENS


def test_counts_in_range_are_kept() -> None:
    assert (count({"n": 42}, "n"), count({"n": 7.0}, "n")) == (42, 7)


def test_utf8_values_read_as_latin1_stay_apart() -> None:
    # 丁 and 七 differ only in their last UTF-8 byte, which latin-1 reads as a C1 character.
    one, seven = ("丁".encode().decode("latin-1"), "七".encode().decode("latin-1"))
    assert text_clean(one, 200) != text_clean(seven, 200)
    assert text_clean("a\x00b\x1b", 200) == "ab"

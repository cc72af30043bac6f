"""A CSV cell a spreadsheet would run as a formula is written as text (OWASP CSV injection)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tokonomics.csv_cells import csv_cell


@pytest.mark.parametrize("text", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "=HYPERLINK(\"http://x\")"])
def test_text_that_starts_a_formula_gets_a_quote(text: str) -> None:
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["support-bot", "a=b", "", "x-1"])
def test_plain_text_is_unchanged(value: str) -> None:
    assert csv_cell(value) == value


@pytest.mark.parametrize("value", [-3, Decimal("-0.25"), 1.5, None, True])
def test_numbers_stay_numbers(value: object) -> None:
    assert csv_cell(value) is value

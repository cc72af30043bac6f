"""CSV cells that a spreadsheet reads as data, never as a formula (OWASP "CSV injection").

Every CSV the product writes passes its text cells through csv_cell: feature, tenant, model and tag values
come from clients, and "=HYPERLINK(…)" in one would run when an operator opens the export.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """Text starting like a formula, prefixed with a single quote; anything else (numbers, negative ones
    included, and None) unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as people write it: plain notation, never scientific (`str(Decimal("1.20E-7"))` is what a
    9-place column gives back for 0.00000012), without trailing zeros; None stays None."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def usd(amount: Decimal | int | float | None, places: int = 2) -> str:
    """$1,234.56; small amounts keep enough places to be non-zero ($0.000431)."""
    if amount is None:
        return "—"
    value = Decimal(amount)
    if 0 < abs(value) < Decimal("0.01") and places == 2:
        places = 6
    return f"${value:,.{int(places)}f}"


@register.filter
def count(amount: int | Decimal | None) -> str:
    """A whole number with thousands separators: 2,469,000."""
    return "—" if amount is None else f"{int(amount):,}"


@register.filter
def change(percent: int | None) -> str:
    """A change in percent, signed with a real minus: +12%, −75%; "new" from nothing."""
    if percent is None:
        return "new"
    return f"+{percent}%" if percent > 0 else f"\u2212{-percent}%" if percent < 0 else "±0%"


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

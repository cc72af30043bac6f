"""What every page's frame shows: white-label branding (an Enterprise account's name, logo and accent colour)
and the account switcher."""

from __future__ import annotations

from django.http import HttpRequest

from billing.models import Account, Seat
from billing.sso.session_scope import session_may_open

DEFAULT_BRAND = {"name": "Tokonomics", "logo_url": "", "accent": "#4f46e5"}


def branding(request: HttpRequest) -> dict:
    account = getattr(request, "tokonomics_account", None)
    brand = dict(DEFAULT_BRAND)
    if account is not None and account.plan.white_label:
        brand["name"] = account.brand_name or brand["name"]
        brand["logo_url"] = account.brand_logo_url
        brand["accent"] = account.brand_accent_color or brand["accent"]
    return {"brand": brand, "current_account": account}


def account_switcher(request: HttpRequest) -> dict:
    """The signed-in person's other accounts, for the switcher in the navigation. A callable, so the query runs
    only on pages that show an account's navigation; an SSO-scoped session lists only the accounts it opens."""
    def other_accounts() -> list[Account]:
        account = getattr(request, "tokonomics_account", None)
        user = getattr(request, "user", None)
        if account is None or user is None or not user.is_authenticated:
            return []
        seats = Seat.objects.filter(user=user).exclude(account=account).select_related("account")
        return [seat.account for seat in seats.order_by("account__name")
                if session_may_open(request, account_id=seat.account_id)]

    return {"other_accounts": other_accounts}

"""White-label branding: an Enterprise account's name, logo and accent colour on every page."""

from __future__ import annotations

from django.http import HttpRequest

DEFAULT_BRAND = {"name": "Tokonomics", "logo_url": "", "accent": "#4f46e5"}


def branding(request: HttpRequest) -> dict:
    account = getattr(request, "tokonomics_account", None)
    brand = dict(DEFAULT_BRAND)
    if account is not None and account.plan.white_label:
        brand["name"] = account.brand_name or brand["name"]
        brand["logo_url"] = account.brand_logo_url
        brand["accent"] = account.brand_accent_color or brand["accent"]
    return {"brand": brand, "current_account": account}

"""Responses the web app's views share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from tokonomics.web_request import HtmxRequest


def after_change(request: HtmxRequest, url: str) -> HttpResponse:
    """After a change: a full page load of `url`, so the whole page (and the brand) shows the new
    state — through HX-Redirect when HTMX posted the form."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def confirm_page(request: HttpRequest, *, context: dict[str, Any], title: str, message: str, confirm_label: str,
                 cancel_url: str, fields: Mapping[str, str] | None = None) -> HttpResponse:
    """The confirm step of a destructive action, a page of its own so it works without JavaScript: its
    form posts back to the same address (`fields` ride along as hidden inputs)."""
    return render(request, "components/confirm.html", {
        **context, "confirm": {"title": title, "message": message, "label": confirm_label, "cancel_url": cancel_url,
                               "action": request.path, "fields": dict(fields or {})},
    })

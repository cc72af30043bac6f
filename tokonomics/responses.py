"""Responses the web app's views share."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import redirect

from tokonomics.web_request import HtmxRequest


def after_change(request: HtmxRequest, url: str) -> HttpResponse:
    """After a change: a full page load of `url`, so the whole page (and the brand) shows the new
    state — through HX-Redirect when HTMX posted the form."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)

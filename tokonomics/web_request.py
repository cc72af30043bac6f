"""What the web app's views may rely on in a request, for the type checker: HtmxMiddleware adds `htmx`
to every request, and behind @login_required the user is a signed-in User, never AnonymousUser."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxRequest(HttpRequest):
    htmx: HtmxDetails


class SignedInRequest(HtmxRequest):
    user: User

"""The hooks django-axes calls to throttle password sign-in (settings: AXES_*): who is signing in, from
where, and what a throttled person sees. Axes counts failures per username and per client address
separately. A success resets the signed-in person's own count only (never by address: a success from
the address someone else's password is being guessed from must not wipe those guesses)."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

USERNAME_MAX_LENGTH = 255  # axes' column


def _username_normalise(raw: object) -> str:
    return str(raw).strip().lower()[:USERNAME_MAX_LENGTH]


def login_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The address tried, normalised the way sign-in matches it, so case changes count as one account."""
    return _username_normalise((credentials or {}).get("username") or request.POST.get("username", ""))


@receiver(user_logged_in, dispatch_uid="billing.sso.login_throttle.reset")
def _reset_own_failures(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Replaces AXES_RESET_ON_SUCCESS, which deletes every failure matching the username OR the address."""
    if not apps.is_installed("axes"):  # only the web process throttles
        return
    from axes.models import AccessAttempt

    AccessAttempt.objects.filter(username=_username_normalise(user.get_username())).delete()


def _valid_ip(candidate: str) -> str | None:
    try:
        return str(ipaddress.ip_address(candidate.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The socket's peer, unless TOKONOMICS_TRUSTED_PROXY_COUNT says that many proxies of ours append to
    X-Forwarded-For: then the address the outermost one appended. Anything left of that was written by
    the client and is never believed (so rotating the header does not dodge the limit)."""
    hops = settings.TOKONOMICS_TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            found = _valid_ip(forwarded[-hops])
            if found:
                return found
    return _valid_ip(request.META.get("REMOTE_ADDR", "") or "")


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    minutes = settings.TOKONOMICS_LOGIN_COOLOFF_MINUTES
    response = render(request, "registration/login_throttled.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response

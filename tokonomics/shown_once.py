"""A secret shown once across a redirect (POST → redirect → GET), so a refresh never resubmits the form
that made it. The secret waits in the session sealed with the app's encryption key and is removed by
the one GET that shows it."""

from __future__ import annotations

import secrets

from django.http import HttpRequest

from tokonomics.crypto import DecryptionError, decrypt_secret, encrypt_secret

_SESSION_KEY = "tk_shown_once"


def _context(ticket: str) -> str:
    return f"shown-once:{ticket}"


def shown_once_stash(request: HttpRequest, *, kind: str, secret: str, label: str) -> None:
    """Keep `secret` (with a label saying what it is) for the next page of this session that asks for `kind`."""
    ticket = secrets.token_urlsafe(16)
    request.session[_SESSION_KEY] = {"kind": kind, "ticket": ticket, "label": label,
                                     "sealed": encrypt_secret(secret, context=_context(ticket))}


def shown_once_pop(request: HttpRequest, *, kind: str) -> tuple[str, str] | None:
    """(label, secret) stashed for `kind`, removed from the session as it is read; None when there is none."""
    held = request.session.get(_SESSION_KEY)
    if not isinstance(held, dict) or held.get("kind") != kind:
        return None
    del request.session[_SESSION_KEY]
    try:
        secret = decrypt_secret(str(held["sealed"]), context=_context(str(held["ticket"])))
    except (DecryptionError, KeyError):
        return None
    return str(held.get("label", "")), secret

"""Which accounts a signed-in session may open, and what it may never do.

A password proves the person, so a password session opens every account they hold a seat in, except
those that require single sign-on for them (their domain verified, passwords disabled): these open
only once their own IdP signs the person in, on top of the password session. An identity provider
only vouches for its own account: a session opened through account X's IdP opens X alone (plus any
other account whose own IdP the person then signs in through), and never carries staff or superuser
rights, whoever the user is. The scope lives in the session; `login()` (any password path: the
sign-in page, an invitation, the admin's own form) sets it for a password, and the SSO callback
sets it right after its own login().
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.middleware import get_user
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import SimpleLazyObject

from billing.sso.services import sso_required_configs

SSO_ACCOUNTS_SESSION_KEY = "sso_accounts"
SSO_REQUIRED_SESSION_KEY = "sso_required"  # a password session: the accounts that still need their IdP


class AccountSignInRequired(PermissionDenied):
    """The person holds a seat in the account, but this session was not opened for it."""

    def __init__(self, account: Any) -> None:
        super().__init__(f"Sign in with your password to open {account.name}.")
        self.account = account


def session_sso_accounts(request: HttpRequest) -> frozenset[int] | None:
    """The accounts this session was opened for through their IdPs, or None for a password session."""
    ids = request.session.get(SSO_ACCOUNTS_SESSION_KEY)
    return None if ids is None else frozenset(int(i) for i in ids)


@dataclass(frozen=True, slots=True)
class SessionScope:
    sso_accounts: frozenset[int] | None  # opened through their IdPs; None: a password session
    sso_required: frozenset[int]  # a password session's accounts that wait for their IdP


def session_scope_get(request: HttpRequest) -> SessionScope:
    required = request.session.get(SSO_REQUIRED_SESSION_KEY) or []
    return SessionScope(session_sso_accounts(request), frozenset(int(i) for i in required))


def session_may_open(request: HttpRequest, *, account_id: int) -> bool:
    scope = session_scope_get(request)
    if scope.sso_accounts is not None:
        return account_id in scope.sso_accounts
    return account_id not in scope.sso_required


def _sso_required_set(request: HttpRequest, ids: frozenset[int]) -> None:
    if ids:
        request.session[SSO_REQUIRED_SESSION_KEY] = sorted(ids)
    else:
        request.session.pop(SSO_REQUIRED_SESSION_KEY, None)


def session_sso_scope_set(request: HttpRequest, *, account_id: int, before: SessionScope | None) -> None:
    """After an SSO `login()`: the session opens `account_id` and what it opened before for the same
    user (`before`, read before login(); None for anyone else). A password session stays one, with
    `account_id` no longer waiting for its IdP."""
    if before is None:
        request.session[SSO_ACCOUNTS_SESSION_KEY] = [account_id]
        _sso_required_set(request, frozenset())
    elif before.sso_accounts is None:
        request.session.pop(SSO_ACCOUNTS_SESSION_KEY, None)
        _sso_required_set(request, before.sso_required - {account_id})
    else:
        request.session[SSO_ACCOUNTS_SESSION_KEY] = sorted(before.sso_accounts | {account_id})
        _sso_required_set(request, frozenset())


@receiver(user_logged_in, dispatch_uid="billing.sso.session_scope.clear")
def _clear_on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Every login() starts as a password session; the SSO callback narrows it right after."""
    if request is not None and hasattr(request, "session"):
        request.session.pop(SSO_ACCOUNTS_SESSION_KEY, None)
        _sso_required_set(request, frozenset(config.account_id for config in sso_required_configs(user=user)))


def _without_staff_rights(request: HttpRequest) -> Any:
    user = get_user(request)
    # In memory only, for this request: the admin's has_permission and every has_perm (the backend's
    # caches emptied) answer no. Nothing saves request.user, and the row keeps its flags.
    user.is_staff = user.is_superuser = False
    # ModelBackend's private caches, which django-stubs does not declare.
    user._perm_cache = user._user_perm_cache = user._group_perm_cache = set()  # type: ignore[union-attr]
    return user


class SessionScopeMiddleware:
    """After AuthenticationMiddleware: an SSO session's user has no staff rights, and an account it may
    not open answers with a sign-in prompt."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if SSO_ACCOUNTS_SESSION_KEY in request.session:
            # Lazy as AuthenticationMiddleware's own; django-stubs types request.user as the bare user.
            request.user = SimpleLazyObject(lambda: _without_staff_rights(request))  # type: ignore[assignment]

            async def auser() -> Any:  # async views ask through request.auser()
                return await sync_to_async(_without_staff_rights)(request)

            request.auser = auser
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, AccountSignInRequired):
            return None
        account = exception.account
        assert request.user.is_authenticated  # membership_get raises it only for a signed-in user
        config = getattr(account, "sso_config", None)
        required = any(c.account_id == account.pk for c in sso_required_configs(user=request.user))
        context = {"target": account, "next": request.get_full_path(),
                   "sso": config is not None and config.active, "sso_required": required}
        return render(request, "registration/account_sign_in.html", context, status=403)

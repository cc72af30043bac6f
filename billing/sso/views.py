"""Sign-in pages: the password sign-in (refusing people whose account requires SSO), the password reset by
email, and the two legs of the OpenID Connect sign-in."""

from __future__ import annotations

import hmac
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.views import LoginView, PasswordResetView
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods

from billing.accounts.forms import PasswordLoginForm, SsoStartForm
from billing.accounts.team import sso_user_sign_in
from billing.models import SsoConfig
from billing.sso import domains as sso_domains
from billing.sso import services as sso
from billing.sso.reset_throttle import reset_mail_allowed
from billing.sso.session_scope import session_scope_get, session_sso_scope_set

PENDING_SESSION_KEY = "sso_pending"
PENDING_MAX_AGE_SECONDS = 600


class PasswordLoginView(LoginView):
    authentication_form = PasswordLoginForm

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(**kwargs) | {"sso_enabled": sso.sso_available()}


class PasswordResetRequestView(PasswordResetView):
    """Django's reset by email (through the configured EMAIL_BACKEND), its link built on SITE_URL rather than
    the request's Host header. It answers the same whether or not the address belongs to anyone."""

    email_template_name = "registration/password_reset_email.txt"

    @property
    def extra_email_context(self) -> dict[str, str]:  # type: ignore[override]  # Django's is a class attribute
        return {"site_url": settings.SITE_URL, "brand_name": "Tokonomics"}

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        if not reset_mail_allowed(request=self.request, email=form.cleaned_data["email"]):
            return redirect(self.get_success_url())  # the same answer as a mail sent: nothing to learn from it
        return super().form_valid(form)


def _safe_next(request: HttpRequest, candidate: str) -> str:
    if candidate and url_has_allowed_host_and_scheme(candidate, {request.get_host()}, request.is_secure()):
        return candidate
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _refused(request: HttpRequest, problem: str, status: int = 403) -> HttpResponse:
    return render(request, "registration/sso_error.html", {"problem": problem}, status=status)


@require_http_methods(["GET", "POST"])
def sso_start(request: HttpRequest) -> HttpResponse:
    """Ask for the work email, find the account whose domains include it, and send the browser to its
    identity provider."""
    next_url = request.POST.get("next") or request.GET.get("next", "")
    form = SsoStartForm(request.POST if request.method == "POST" else None,
                        initial={"email": request.GET.get("email", "")})
    if form.is_valid():
        email = form.cleaned_data["email"]
        config = sso.sso_config_for_email(email=email)
        if config is None:
            form.add_error("email", f"No single sign-on is set up for {email.rpartition('@')[2]}. "
                                    "Sign in with your password instead.")
        else:
            try:
                metadata = sso.provider_metadata_get(issuer=config.issuer)
            except sso.SsoError as error:
                form.add_error(None, str(error))
            else:
                auth = sso.authorization_request_create(config=config, metadata=metadata)
                request.session[PENDING_SESSION_KEY] = {
                    "config": config.pk, "state": auth.state, "nonce": auth.nonce, "verifier": auth.code_verifier,
                    "next": _safe_next(request, next_url), "started": time.time(),
                }
                return redirect(auth.url)
    status = 400 if form.is_bound else 200
    return render(request, "registration/sso_start.html", {"form": form, "next": next_url}, status=status)


@require_GET
def sso_callback(request: HttpRequest) -> HttpResponse:
    pending = request.session.pop(PENDING_SESSION_KEY, None)  # one use, whatever the outcome
    if not isinstance(pending, dict):
        return _refused(request, "This sign-in was not started here, or it already finished. Start again.", 400)
    if not hmac.compare_digest(str(request.GET.get("state", "")), pending["state"]):
        return _refused(request, "This answer does not belong to your sign-in (state). Start again.", 400)
    if time.time() - pending["started"] > PENDING_MAX_AGE_SECONDS:
        return _refused(request, "The sign-in took too long. Start again.", 400)
    if "error" in request.GET:
        detail = request.GET.get("error_description") or request.GET["error"]
        return _refused(request, f"The identity provider refused the sign-in: {detail}")
    config = SsoConfig.objects.select_related("account__plan").filter(pk=pending["config"]).first()
    if config is None or not config.active:
        return _refused(request, "Single sign-on is no longer enabled for this account.")
    try:
        metadata = sso.provider_metadata_get(issuer=config.issuer)
        id_token = sso.code_exchange(config=config, metadata=metadata, code=request.GET.get("code", ""),
                                     code_verifier=pending["verifier"])
        claims = sso.id_token_validate(config=config, metadata=metadata, id_token=id_token, nonce=pending["nonce"])
        user = sso_user_sign_in(config=config, claims=claims)
    except sso.SsoError as error:
        return _refused(request, str(error))
    # The IdP vouches for its own account only: what the session opened before is kept only if it
    # was the same person's.
    before = session_scope_get(request) if request.user.pk == user.pk else None
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    session_sso_scope_set(request, account_id=config.account_id, before=before)
    return redirect(pending["next"])


@require_http_methods(["GET", "POST"])
def sso_domain_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The link mailed to a domain contact. GET only shows what is asked (mail scanners follow links);
    the button's POST verifies the claim and spends the link."""
    try:
        claim = sso_domains.sso_domain_confirmation_get(token=token)
        if request.method == "POST":
            claim = sso_domains.sso_domain_confirm(token=token)
            return render(request, "registration/sso_domain_confirm.html", {"claim": claim, "done": True})
    except sso_domains.DomainConfirmationError as error:
        return render(request, "registration/sso_domain_confirm.html", {"problem": str(error)}, status=400)
    except ValidationError as error:
        return render(request, "registration/sso_domain_confirm.html", {"problem": " ".join(error.messages)},
                      status=409)
    return render(request, "registration/sso_domain_confirm.html", {"claim": claim})

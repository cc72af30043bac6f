"""Management tokens for the REST API in the web app: admins create one (its plaintext shown once),
list them and revoke them, each through the audited token services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from billing.accounts.access import Membership, membership_get
from billing.accounts.management_tokens import management_token_create, management_token_revoke
from billing.models import ManagementToken
from tokonomics.audit import Actor
from tokonomics.responses import confirm_page
from tokonomics.shown_once import shown_once_pop, shown_once_stash
from tokonomics.web_request import SignedInRequest


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. terraform or ci.")
    read_only = forms.BooleanField(required=False, label="Read only",
                                   help_text="A read-only token can list and export, never change anything.")
    expires_at = forms.DateTimeField(required=False, help_text="Optional, e.g. 2027-01-01 00:00 (UTC).")

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data["expires_at"]
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("This is in the past.")
        return value


def _context(membership: Membership) -> dict[str, Any]:
    return {"tab": "tokens", "membership": membership, "account": membership.account}


def _tokens_page(request: SignedInRequest, membership: Membership, form: TokenForm, status: int = 200) -> HttpResponse:
    created = shown_once_pop(request, kind="management_token")
    tokens = ManagementToken.objects.filter(account=membership.account).order_by("revoked_at", "name")
    response = render(request, "billing/tokens.html", {
        **_context(membership), "tokens": tokens, "form": form, "created": created, "now": timezone.now(),
        "api_url": request.build_absolute_uri("/api/v1/")}, status=status)
    if created:
        response["Cache-Control"] = "no-store"  # the page holds a plaintext token
    return response


@require_GET
@login_required
def token_list(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_tokens")
    return _tokens_page(request, membership, TokenForm())


@require_http_methods(["GET", "POST"])
@login_required
def token_create(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    if request.method == "GET":
        return redirect("token_list", slug)
    membership.require("manage_tokens")
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _tokens_page(request, membership, form, status=400)
    token, plaintext = management_token_create(account=membership.account, actor=Actor.of_user(request.user),
                                               **form.cleaned_data)
    shown_once_stash(request, kind="management_token", secret=plaintext, label=token.name)
    return redirect("token_list", slug)


@require_http_methods(["GET", "POST"])
@login_required
def token_revoke(request: SignedInRequest, slug: str, token_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_tokens")
    token = get_object_or_404(ManagementToken, pk=token_id, account=membership.account)
    if request.method == "GET":
        return confirm_page(request, context=_context(membership), title=f"Revoke API token {token.name}?",
                            message="The REST API refuses it from the next request. This cannot be undone.",
                            confirm_label="Revoke token", cancel_url=reverse("token_list", args=[slug]))
    management_token_revoke(account=membership.account, actor=Actor.of_user(request.user), token=token)
    messages.success(request, f"API token {token.name} revoked.")
    return redirect("token_list", slug)

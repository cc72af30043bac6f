"""Keys and provider endpoints in the web app (members create keys; admins manage endpoints)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from billing.accounts.access import Membership, membership_get
from proxy.catalog import BUILTIN_PROVIDERS, WIRE_FORMATS
from proxy.models import ApiKey, ProviderEndpoint, deployments_problem
from proxy.schemas import MAX_PER_MINUTE
from proxy.services import api_key_create, api_key_revoke, provider_endpoint_create, provider_endpoint_update
from tokonomics.audit import Actor
from tokonomics.responses import after_change
from tokonomics.validation import form_errors_from
from tokonomics.web_request import SignedInRequest


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100)
    environment = forms.CharField(max_length=60, initial="production")
    allowed_models = forms.CharField(required=False, help_text='Comma-separated; globs allowed ("claude-*"). '
                                     "Empty: every model.")
    expires_at = forms.DateTimeField(required=False, help_text="Optional, e.g. 2027-01-01 00:00 (UTC).")
    requests_per_minute = forms.IntegerField(required=False, min_value=1, max_value=MAX_PER_MINUTE)
    tokens_per_minute = forms.IntegerField(required=False, min_value=1, max_value=MAX_PER_MINUTE)
    max_concurrent = forms.IntegerField(required=False, min_value=1, max_value=MAX_PER_MINUTE)

    def clean_allowed_models(self) -> list[str]:
        return [m.strip() for m in self.cleaned_data["allowed_models"].split(",") if m.strip()]


def _may_revoke(request: SignedInRequest, membership: Membership, key: ApiKey) -> bool:
    """Admins and owners revoke any key of the account; members only the keys they created."""
    if membership.can("revoke_any_key"):
        return True
    return membership.can("manage_keys") and key.created_by_id is not None and key.created_by_id == request.user.pk


def _keys_page(request: SignedInRequest, membership: Membership, form: KeyForm, created: tuple | None = None,
               status: int = 200) -> HttpResponse:
    keys = list(membership.account.api_keys.order_by("revoked_at", "name"))
    context = {"tab": "keys", "membership": membership, "account": membership.account, "form": form,
               "keys": keys, "revocable": {k.pk for k in keys if _may_revoke(request, membership, k)},
               "created": created,
               "can_manage": membership.can("manage_keys"), "site": request.build_absolute_uri("/").rstrip("/")}
    # A whole page, never a partial: the form posts without HTMX, and a new key's plaintext is shown above it.
    response = render(request, "proxy/keys.html", context, status=status)
    if created:
        response["Cache-Control"] = "no-store"  # the page holds a plaintext key
    return response


@require_GET
@login_required
def key_list(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    return _keys_page(request, membership, KeyForm())


@require_POST
@login_required
def key_create(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_keys")
    form = KeyForm(request.POST)
    if form.is_valid():
        try:
            key, plaintext = api_key_create(account=membership.account, actor=Actor.of_user(request.user),
                                            **form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            # Rendered, never redirected: the plaintext lives in this one response only.
            return _keys_page(request, membership, KeyForm(), created=(key, plaintext))
    return _keys_page(request, membership, form, status=400)


@require_POST
@login_required
def key_revoke(request: SignedInRequest, slug: str, key_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_keys")
    key = get_object_or_404(ApiKey, pk=key_id, account=membership.account)
    if not _may_revoke(request, membership, key):
        raise PermissionDenied("Members may revoke only the keys they created; ask an account admin.")
    api_key_revoke(account=membership.account, actor=Actor.of_user(request.user), key=key)
    messages.success(request, f"Key {key.name} revoked; proxies stop accepting it within a second.")
    return redirect("key_list", slug)


class EndpointForm(forms.Form):
    slug = forms.SlugField(max_length=63, help_text="The {provider} in /proxy/{provider}/…; built in: "
                           + ", ".join(BUILTIN_PROVIDERS))
    wire_format = forms.ChoiceField(choices=[("", "(from the built-in kind)")] + [(w, w) for w in WIRE_FORMATS],
                                    required=False)
    base_url = forms.URLField(required=False, max_length=500, assume_scheme="https")
    pricing_provider = forms.CharField(required=False, max_length=40,
                                       help_text="genai-prices provider id; empty to infer it.")
    deployments = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=20_000,
        help_text="Azure OpenAI: one deployment per line, as deployment = model (e.g. prod-chat = gpt-4o). "
                  "Empty keeps them; a single '-' removes them all.")
    credential = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                 help_text="Write-only: stored encrypted, never shown again. Empty keeps it.")

    def clean_deployments(self) -> dict[str, str] | None:
        """None (keep them), or the map the lines give: `{}` for a lone '-'."""
        text = self.cleaned_data["deployments"].strip()
        if not text:
            return None
        if text == "-":
            return {}
        mapping: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            name, sep, model = line.partition("=")
            if not line.strip():
                continue
            if not sep or not name.strip() or not model.strip():
                raise forms.ValidationError(f"Line {number}: write deployment = model.")
            mapping[name.strip()] = model.strip()
        problem = deployments_problem(mapping)
        if problem:
            raise forms.ValidationError(problem)
        return mapping


def _endpoints_page(
    request: SignedInRequest, membership: Membership, form: EndpointForm, status: int = 200
) -> HttpResponse:
    context = {"tab": "providers", "membership": membership, "account": membership.account, "form": form,
               "endpoints": membership.account.provider_endpoints.order_by("slug"),
               "can_manage": membership.can("manage_providers")}
    template = "proxy/providers.html#endpoint-form" if request.htmx else "proxy/providers.html"
    return render(request, template, context, status=status)


@require_GET
@login_required
def provider_list(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    return _endpoints_page(request, membership, EndpointForm())


@require_POST
@login_required
def provider_save(request: SignedInRequest, slug: str) -> HttpResponse:
    """Create an endpoint, or update the one with this slug (the form is keyed by slug)."""
    membership = membership_get(request, slug)
    membership.require("manage_providers")
    form = EndpointForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        existing = ProviderEndpoint.objects.filter(account=membership.account, slug=data["slug"]).first()
        actor = Actor.of_user(request.user)
        try:
            if existing is None:
                endpoint = provider_endpoint_create(
                    account=membership.account, actor=actor, slug=data["slug"], wire_format=data["wire_format"] or None,
                    base_url=data["base_url"] or None, pricing_provider=data["pricing_provider"] or None,
                    deployments=data["deployments"], credential=data["credential"] or None)
            else:
                changes = {k: data[k] for k in ("wire_format", "base_url", "pricing_provider") if data[k]}
                if data["deployments"] is not None:
                    changes["deployments"] = data["deployments"]
                if data["credential"]:
                    changes["credential"] = data["credential"]
                endpoint = provider_endpoint_update(account=membership.account, actor=actor, endpoint=existing,
                                                    changes=changes)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, f"Provider endpoint {endpoint.slug} saved.")
            return after_change(request, reverse("provider_list", args=[slug]))
    return _endpoints_page(request, membership, form, status=200 if request.htmx else 400)

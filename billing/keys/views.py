"""Keys and provider endpoints in the web app (members create keys; admins manage endpoints)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.accounts.access import Membership, membership_get
from billing.keys.selectors import key_row_list
from proxy.catalog import BUILTIN_PROVIDERS, WIRE_FORMATS
from proxy.endpoint_check import provider_endpoint_check
from proxy.models import ApiKey, ProviderEndpoint, deployments_problem
from proxy.schemas import MAX_PER_MINUTE
from proxy.services import (
    ROTATION_GRACE_CHOICES,
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    api_key_update,
    provider_endpoint_create,
    provider_endpoint_delete,
    provider_endpoint_update,
)
from tokonomics.audit import Actor
from tokonomics.responses import after_change, confirm_page
from tokonomics.shown_once import shown_once_pop, shown_once_stash
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
    """Admins and owners revoke (and rotate) any key of the account; members only the keys they created."""
    if membership.can("revoke_any_key"):
        return True
    return membership.can("manage_keys") and key.created_by_id is not None and key.created_by_id == request.user.pk


def _page_context(membership: Membership, tab: str) -> dict[str, Any]:
    return {"tab": tab, "membership": membership, "account": membership.account}


def _keys_page(request: SignedInRequest, membership: Membership, form: KeyForm, status: int = 200) -> HttpResponse:
    rows = key_row_list(membership.account)
    created = shown_once_pop(request, kind="api_key")
    context = {**_page_context(membership, "keys"), "form": form,
               "rows": rows, "revocable": {r.key.pk for r in rows if _may_revoke(request, membership, r.key)},
               "created": created, "now": timezone.now(),
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


@require_http_methods(["GET", "POST"])
@login_required
def key_create(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    if request.method == "GET":  # a bookmarked or refreshed form address: the page that holds the form
        return redirect("key_list", slug)
    membership.require("manage_keys")
    form = KeyForm(request.POST)
    if form.is_valid():
        try:
            key, plaintext = api_key_create(account=membership.account, actor=Actor.of_user(request.user),
                                            **form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            # The plaintext crosses the redirect sealed in the session and is shown by the one page that pops it.
            shown_once_stash(request, kind="api_key", secret=plaintext, label=key.name)
            return redirect("key_list", slug)
    return _keys_page(request, membership, form, status=400)


def _key_for_change(request: SignedInRequest, membership: Membership, key_id: int) -> ApiKey:
    membership.require("manage_keys")
    key = get_object_or_404(ApiKey, pk=key_id, account=membership.account)
    if not _may_revoke(request, membership, key):
        raise PermissionDenied("Members may change only the keys they created; ask an account admin.")
    return key


@require_http_methods(["GET", "POST"])
@login_required
def key_revoke(request: SignedInRequest, slug: str, key_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    key = _key_for_change(request, membership, key_id)
    if request.method == "GET":
        return confirm_page(request, context=_page_context(membership, "keys"), title=f"Revoke key {key.name}?",
                            message="Calls with this key are refused within a second. This cannot be undone.",
                            confirm_label="Revoke key", cancel_url=reverse("key_list", args=[slug]))
    api_key_revoke(account=membership.account, actor=Actor.of_user(request.user), key=key)
    messages.success(request, f"Key {key.name} revoked; proxies stop accepting it within a second.")
    return redirect("key_list", slug)


@require_http_methods(["GET", "POST"])
@login_required
def key_edit(request: SignedInRequest, slug: str, key_id: int) -> HttpResponse:
    """Change a key's name, environment, models, expiry and limits; its secret stays (rotate for a new one)."""
    membership = membership_get(request, slug)
    key = _key_for_change(request, membership, key_id)
    if key.revoked_at is not None:
        raise PermissionDenied("A revoked key cannot be changed.")
    if request.method == "GET":
        form = KeyForm(initial={**{name: getattr(key, name) for name in KeyForm.base_fields},
                                "allowed_models": ", ".join(key.allowed_models)})
    else:
        form = KeyForm(request.POST)
        if form.is_valid():
            changes = {name: value for name, value in form.cleaned_data.items() if getattr(key, name) != value}
            try:
                api_key_update(account=membership.account, actor=Actor.of_user(request.user),
                               key=ApiKey.objects.get(pk=key.pk), changes=changes)
            except ValidationError as error:
                form_errors_from(form, error)
            else:
                messages.success(request, f"Key {form.cleaned_data['name']} saved.")
                return redirect("key_list", slug)
    context = {**_page_context(membership, "keys"), "key": key, "form": form}
    return render(request, "proxy/key_edit.html", context, status=400 if form.is_bound else 200)


class RotateForm(forms.Form):
    grace = forms.ChoiceField(label="The old secret keeps working", initial="24h", choices=[
        ("none", "not at all: it stops now"), ("1h", "for 1 hour"), ("24h", "for 24 hours"), ("7d", "for 7 days")])


@require_http_methods(["GET", "POST"])
@login_required
def key_rotate(request: SignedInRequest, slug: str, key_id: int) -> HttpResponse:
    """A new secret for the key, same settings and budgets; the old one lives on for the grace period chosen."""
    membership = membership_get(request, slug)
    key = _key_for_change(request, membership, key_id)
    form = RotateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            key, plaintext = api_key_rotate(account=membership.account, actor=Actor.of_user(request.user), key=key,
                                            grace=ROTATION_GRACE_CHOICES[form.cleaned_data["grace"]])
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            shown_once_stash(request, kind="api_key", secret=plaintext, label=key.name)
            until = key.previous_valid_until
            messages.success(request, f"Key {key.name} rotated. " + (
                f"The old secret works until {until:%Y-%m-%d %H:%M} UTC." if until else "The old secret stopped."))
            return redirect("key_list", slug)
    context = {**_page_context(membership, "keys"), "key": key, "form": form}
    return render(request, "proxy/key_rotate.html", context, status=400 if form.is_bound else 200)


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
    request: SignedInRequest, membership: Membership, form: EndpointForm, status: int = 200,
    editing: ProviderEndpoint | None = None,
) -> HttpResponse:
    context = {"tab": "providers", "membership": membership, "account": membership.account, "form": form,
               "endpoints": membership.account.provider_endpoints.order_by("slug"), "editing": editing,
               "check": request.session.pop(CHECK_SESSION_KEY, None),
               "site": request.build_absolute_uri("/").rstrip("/"),
               "can_manage": membership.can("manage_providers")}
    template = "proxy/providers.html#endpoint-form" if request.htmx else "proxy/providers.html"
    return render(request, template, context, status=status)


@require_GET
@login_required
def provider_list(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    return _endpoints_page(request, membership, EndpointForm())


@require_http_methods(["GET", "POST"])
@login_required
def provider_save(request: SignedInRequest, slug: str) -> HttpResponse:
    """Create an endpoint, or update the one with this slug (the form is keyed by slug)."""
    membership = membership_get(request, slug)
    if request.method == "GET":  # the form's address, bookmarked or refreshed: the page that holds the form
        return redirect("provider_list", slug)
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


# The outcome of the last connection test, carried across its redirect to the page that shows it once.
CHECK_SESSION_KEY = "tk_endpoint_check"


class EndpointEditForm(EndpointForm):
    def __init__(self, *args: Any, endpoint: ProviderEndpoint, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"slug": endpoint.slug, "wire_format": endpoint.wire_format,
                                      "base_url": endpoint.base_url, "pricing_provider": endpoint.pricing_provider})
        super().__init__(*args, **kwargs)
        self.fields["slug"].disabled = True  # the slug is the endpoint's address: a new slug is a new endpoint
        self.fields["slug"].help_text = "The {provider} in /proxy/{provider}/…; to change it, add a new endpoint."


def _endpoint_for_change(membership: Membership, endpoint_id: int) -> ProviderEndpoint:
    membership.require("manage_providers")
    return get_object_or_404(ProviderEndpoint, pk=endpoint_id, account=membership.account)


@require_http_methods(["GET", "POST"])
@login_required
def provider_edit(request: SignedInRequest, slug: str, endpoint_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    endpoint = _endpoint_for_change(membership, endpoint_id)
    if request.method == "GET":
        return _endpoints_page(request, membership, EndpointEditForm(endpoint=endpoint), editing=endpoint)
    form = EndpointEditForm(request.POST, endpoint=endpoint)
    if form.is_valid():
        data = form.cleaned_data
        changes = {"wire_format": data["wire_format"] or endpoint.wire_format,
                   "base_url": data["base_url"] or endpoint.base_url, "pricing_provider": data["pricing_provider"]}
        if data["credential"]:
            changes["credential"] = data["credential"]
        try:
            provider_endpoint_update(account=membership.account, actor=Actor.of_user(request.user),
                                     endpoint=endpoint, changes=changes)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, f"Provider endpoint {endpoint.slug} saved.")
            return redirect("provider_list", slug)
    endpoint.refresh_from_db()
    return _endpoints_page(request, membership, form, status=400, editing=endpoint)


@require_http_methods(["GET", "POST"])
@login_required
def provider_delete(request: SignedInRequest, slug: str, endpoint_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    endpoint = _endpoint_for_change(membership, endpoint_id)
    if request.method == "GET":
        return confirm_page(request, context=_page_context(membership, "providers"),
                            title=f"Delete provider endpoint {endpoint.slug}?",
                            message=f"Calls to /proxy/{endpoint.slug}/… are refused within a second, and its stored "
                                    "credential is deleted. Usage already recorded stays.",
                            confirm_label="Delete endpoint", cancel_url=reverse("provider_list", args=[slug]))
    provider_endpoint_delete(account=membership.account, actor=Actor.of_user(request.user), endpoint=endpoint)
    messages.success(request, f"Provider endpoint {endpoint.slug} deleted.")
    return redirect("provider_list", slug)


@require_POST
@login_required
def provider_test(request: SignedInRequest, slug: str, endpoint_id: int) -> HttpResponse:
    """Ask the provider for its model list with the stored credential; the page shows what came back."""
    membership = membership_get(request, slug)
    endpoint = _endpoint_for_change(membership, endpoint_id)
    check = provider_endpoint_check(endpoint=endpoint)
    request.session[CHECK_SESSION_KEY] = {"slug": endpoint.slug, "ok": check.ok, "message": check.message,
                                          "detail": check.detail}
    return redirect("provider_list", slug)

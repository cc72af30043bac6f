"""Guardrail policies in the web app: the account default and each key's own (admins edit them), and "try this
text", which shows what a policy would match and the text as it would be sent. A tried text is evaluated in the
request that posts it and returned in that response only (no-store): never saved, never logged."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.accounts.access import Membership, membership_get
from billing.keys.guardrail_forms import GuardrailPolicyForm, TryForm, form_initial
from proxy.guardrail_policies import (
    guardrail_effective_spec,
    guardrail_policy_delete,
    guardrail_policy_get,
    guardrail_policy_list,
    guardrail_policy_put,
)
from proxy.guardrail_try import TryResult, guardrail_try
from proxy.guardrails.policy import policy_problems
from proxy.models import ApiKey
from tokonomics.audit import Actor
from tokonomics.responses import confirm_page
from tokonomics.web_request import SignedInRequest

DEFAULT = "default"


def _context(membership: Membership) -> dict[str, Any]:
    return {"tab": "guardrails", "membership": membership, "account": membership.account}


def _target_key(membership: Membership, target: str) -> ApiKey | None:
    """`default` (the account's policy) or a key id of the account."""
    if target == DEFAULT:
        return None
    if not target.isdigit():
        raise Http404("No such guardrail policy.")
    return get_object_or_404(ApiKey, pk=int(target), account=membership.account)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"  # the page holds the text that was tried
    return response


def _list_page(request: SignedInRequest, membership: Membership, *, try_form: TryForm,
               result: TryResult | None = None, status: int = 200) -> HttpResponse:
    policies = guardrail_policy_list(account=membership.account)
    default = next((p for p in policies if p.key is None), None)
    own = {p.key_id: p for p in policies if p.key is not None}
    keys = list(ApiKey.objects.filter(account=membership.account, revoked_at__isnull=True).order_by("name"))
    context = {**_context(membership), "default": default, "rows": [(k, own.get(k.pk)) for k in keys],
               "try_form": try_form, "result": result, "can_manage": membership.can("manage_guardrails")}
    return render(request, "proxy/guardrails.html", context, status=status)


@require_GET
@login_required
def guardrail_list(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    return _list_page(request, membership, try_form=TryForm(initial={"target": DEFAULT}))


@require_POST
@login_required
def guardrail_try_stored(request: SignedInRequest, slug: str) -> HttpResponse:
    """Try a text against the account default or a key's effective policy, as stored."""
    membership = membership_get(request, slug)
    form = TryForm(request.POST)
    if not form.is_valid():
        return _list_page(request, membership, try_form=form, status=400)
    target = form.cleaned_data["target"] or DEFAULT
    key = _target_key(membership, target)
    if key is None:
        stored = guardrail_policy_get(account=membership.account, key=None)
        spec = stored.spec if stored is not None else None
    else:
        spec = guardrail_effective_spec(account=membership.account, key=key)
    text = form.cleaned_data["text"]
    result = guardrail_try(spec=spec, text=text, scope=form.cleaned_data["scope"]) if spec else \
        TryResult(result=text, blocked_by=None)
    return _no_store(_list_page(request, membership, try_form=form, result=result))


@require_http_methods(["GET", "POST"])
@login_required
def guardrail_edit(request: SignedInRequest, slug: str, target: str) -> HttpResponse:
    """Edit the default or a key's own policy. "Try" evaluates the form as it stands, saving nothing."""
    membership = membership_get(request, slug)
    membership.require("manage_guardrails")
    key = _target_key(membership, target)
    stored = guardrail_policy_get(account=membership.account, key=key)
    try_form = TryForm(request.POST if "try" in request.POST else None, initial={"target": target})
    result = None
    if request.method == "GET":
        form = GuardrailPolicyForm(initial=form_initial(stored.spec if stored else None))
    else:
        form = GuardrailPolicyForm(request.POST)
        if form.is_valid():
            spec = form.spec()
            problems = policy_problems(spec) if spec else []
            for problem in problems:
                form.add_error(None, problem)
            if "try" in request.POST:
                if not problems and try_form.is_valid():
                    result = guardrail_try(spec=spec, text=try_form.cleaned_data["text"],
                                           scope=try_form.cleaned_data["scope"]) if spec else \
                        TryResult(result=try_form.cleaned_data["text"], blocked_by=None)
            elif not problems:
                return _save(request, membership, key, spec)
    context = {**_context(membership), "key": key, "target": target, "form": form, "stored": stored,
               "try_form": try_form, "result": result}
    status = 400 if form.is_bound and (form.errors or (try_form.is_bound and try_form.errors)) else 200
    response = render(request, "proxy/guardrail_edit.html", context, status=status)
    return _no_store(response) if "try" in request.POST else response


def _save(request: SignedInRequest, membership: Membership, key: ApiKey | None, spec: dict[str, Any]) -> HttpResponse:
    actor = Actor.of_user(request.user)
    whose = f"key {key.name}" if key is not None else "the account"
    if not spec:  # an empty form: no policy (a key then follows the default)
        guardrail_policy_delete(account=membership.account, actor=actor, key=key)
        messages.success(request, f"Guardrails of {whose} removed.")
        return redirect("guardrail_list", membership.account.slug)
    try:
        guardrail_policy_put(account=membership.account, actor=actor, key=key, spec=spec)
    except ValidationError as error:  # checked above; a race with a change of the rules only
        messages.error(request, "; ".join(error.messages))
        return redirect("guardrail_list", membership.account.slug)
    messages.success(request, f"Guardrails of {whose} saved; the proxy applies them within a second.")
    return redirect("guardrail_list", membership.account.slug)


@require_http_methods(["GET", "POST"])
@login_required
def guardrail_delete(request: SignedInRequest, slug: str, target: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_guardrails")
    key = _target_key(membership, target)
    whose = f"key {key.name}" if key is not None else "the account (the default)"
    if request.method == "GET":
        return confirm_page(request, context=_context(membership), title=f"Remove the guardrails of {whose}?",
                            message="Calls are no longer masked, checked or given the system prompt by this policy "
                                    "(a key still follows the account default) within a second.",
                            confirm_label="Remove guardrails", cancel_url=reverse("guardrail_list", args=[slug]))
    if guardrail_policy_delete(account=membership.account, actor=Actor.of_user(request.user), key=key):
        messages.success(request, f"Guardrails of {whose} removed.")
    return redirect("guardrail_list", slug)

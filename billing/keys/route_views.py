"""Routes in the web app: a model name clients call, its targets and retry policy (admins, like endpoints)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from billing.accounts.access import Membership, membership_get
from proxy.models import (
    MAX_ROUTE_CACHE_TTL_SECONDS,
    MAX_ROUTE_TARGETS,
    ROUTE_STRATEGIES,
    Route,
    route_targets_problem,
)
from proxy.services import route_create, route_delete, route_update
from tokonomics.audit import Actor
from tokonomics.responses import confirm_page
from tokonomics.validation import form_errors_from

TARGETS_HELP = ("One target per line, in order: endpoint/model, then optionally weight=N and timeout=SECONDS, "
                "e.g. openai/gpt-4o timeout=10")


def targets_text(targets: list[dict[str, Any]]) -> str:
    lines = []
    for t in targets:
        extra = "" if t.get("weight", 1) == 1 else f" weight={t['weight']}"
        if t.get("timeout_seconds") is not None:
            extra += f" timeout={t['timeout_seconds']:g}"
        lines.append(f"{t['endpoint']}/{t['model']}{extra}")
    return "\n".join(lines)


class AccountDefaultSelect(forms.NullBooleanSelect):
    """Yes / No / the account's setting (None)."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.choices = [("unknown", "As the account says"), ("true", "Yes"), ("false", "No")]


class RouteForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="The model name clients send, e.g. support-default or "
                           "gpt-4o-mini (a real name routes that model).")
    strategy = forms.ChoiceField(choices=[(s, s) for s in ROUTE_STRATEGIES], initial="fallback",
                                 help_text="fallback: in order · weighted: by weight · lowest-cost: cheapest by the "
                                           "call's estimate · lowest-latency: fastest recent answers")
    targets = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=5000, help_text=TARGETS_HELP)
    max_attempts = forms.IntegerField(min_value=1, max_value=10, initial=3,
                                      help_text="Upstream attempts per call, retries and fallbacks together.")
    deadline_seconds = forms.FloatField(min_value=0.1, max_value=600, initial=60,
                                        help_text="No attempt starts, and no retry waits, past this.")
    retries = forms.IntegerField(min_value=0, max_value=10, initial=1,
                                 help_text="Retries of one target (429, 5xx, timeouts) before the next.")
    backoff_ms = forms.IntegerField(min_value=0, max_value=60_000, initial=200,
                                    help_text="First retry's backoff ceiling, doubled each retry (full jitter); "
                                              "a Retry-After wins.")
    cache_ttl_seconds = forms.IntegerField(min_value=1, max_value=MAX_ROUTE_CACHE_TTL_SECONDS, required=False,
                                           label="Response cache TTL (seconds)",
                                           help_text="Empty: the account's (Settings → Response cache).")
    cache_nonzero_temperature = forms.NullBooleanField(
        required=False, label="Cache sampled calls",
        widget=AccountDefaultSelect,
        help_text="Calls with a temperature above 0 (or none) are cached only if this (or the account) says so.")

    def clean_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = []
        for number, line in enumerate(self.cleaned_data["targets"].splitlines(), start=1):
            words = line.split()
            if not words:
                continue
            endpoint, slash, model = words[0].partition("/")
            if not slash or not endpoint or not model:
                raise forms.ValidationError(f"Line {number}: write endpoint/model.")
            target: dict[str, Any] = {"endpoint": endpoint, "model": model, "weight": 1, "timeout_seconds": None}
            for word in words[1:]:
                name, _, value = word.partition("=")
                try:
                    if name == "weight":
                        target["weight"] = int(value)
                    elif name == "timeout":
                        target["timeout_seconds"] = float(value)
                    else:
                        raise ValueError(name)
                except ValueError:
                    raise forms.ValidationError(
                        f"Line {number}: {word!r} is not weight=N or timeout=SECONDS.") from None
            targets.append(target)
        if problem := route_targets_problem(targets):
            raise forms.ValidationError(problem if targets else f"At least one target, at most {MAX_ROUTE_TARGETS}.")
        return targets


def _routes_page(request: Any, membership: Membership, form: RouteForm, status: int = 200,
                 editing: Route | None = None) -> HttpResponse:
    routes = membership.account.routes.order_by("name")
    context = {"tab": "routes", "membership": membership, "account": membership.account, "form": form,
               "routes": [(r, targets_text(r.targets)) for r in routes], "editing": editing,
               "can_manage": membership.can("manage_providers")}
    return render(request, "proxy/routes.html", context, status=status)


@require_GET
@login_required
def route_list(request: Any, slug: str) -> HttpResponse:
    return _routes_page(request, membership_get(request, slug), RouteForm())


@require_http_methods(["GET", "POST"])
@login_required
def route_new(request: Any, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    if request.method == "GET":
        return redirect("route_list", slug)
    membership.require("manage_providers")
    form = RouteForm(request.POST)
    if form.is_valid():
        try:
            route = route_create(account=membership.account, actor=Actor.of_user(request.user), **form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, f"Route {route.name} saved.")
            return redirect("route_list", slug)
    return _routes_page(request, membership, form, status=400)


def _route_for_change(membership: Membership, route_id: int) -> Route:
    membership.require("manage_providers")
    return get_object_or_404(Route, pk=route_id, account=membership.account)


@require_http_methods(["GET", "POST"])
@login_required
def route_edit(request: Any, slug: str, route_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    route = _route_for_change(membership, route_id)
    if request.method == "GET":
        initial = {"name": route.name, "strategy": route.strategy, "targets": targets_text(route.targets),
                   "max_attempts": route.max_attempts, "deadline_seconds": route.deadline_seconds,
                   "retries": route.retries, "backoff_ms": route.backoff_ms,
                   "cache_ttl_seconds": route.cache_ttl_seconds,
                   "cache_nonzero_temperature": route.cache_nonzero_temperature}
        return _routes_page(request, membership, RouteForm(initial=initial), editing=route)
    form = RouteForm(request.POST)
    if form.is_valid():
        try:
            route_update(account=membership.account, actor=Actor.of_user(request.user), route=route,
                         changes=form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, f"Route {route.name} saved.")
            return redirect("route_list", slug)
    route.refresh_from_db()
    return _routes_page(request, membership, form, status=400, editing=route)


@require_http_methods(["GET", "POST"])
@login_required
def route_remove(request: Any, slug: str, route_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    route = _route_for_change(membership, route_id)
    if request.method == "GET":
        return confirm_page(request, context={"tab": "routes", "membership": membership, "account": membership.account},
                            title=f"Delete route {route.name}?",
                            message=f"Calls naming model {route.name} go to the endpoint their URL names again, "
                                    "as that model, within a second. Usage already recorded stays.",
                            confirm_label="Delete route", cancel_url=reverse("route_list", args=[slug]))
    route_delete(account=membership.account, actor=Actor.of_user(request.user), route=route)
    messages.success(request, f"Route {route.name} deleted.")
    return redirect("route_list", slug)

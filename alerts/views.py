"""Alert channels, burn-rate rules and the delivery log in the web app (admins manage; all see)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from alerts.events import alert_test_send
from alerts.models import BUDGET_ALERT_TYPES, SUBSCRIBABLE_TYPES, AlertChannel, AlertDelivery, AlertEvent, AlertRule
from alerts.services import (
    alert_channel_create,
    alert_channel_delete,
    alert_channel_update,
    alert_rule_create,
    alert_rule_delete,
    alert_rule_update,
    slack_url_problem,
)
from billing.accounts.access import Membership, membership_get
from tokonomics.audit import Actor
from tokonomics.responses import confirm_page
from tokonomics.shown_once import shown_once_pop, shown_once_stash
from tokonomics.validation import form_errors_from
from tokonomics.web_request import SignedInRequest


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=AlertChannel.Kind.choices)
    url = forms.URLField(required=False, max_length=500, assume_scheme="https",
                         help_text="Webhook: where alerts are posted. Slack: the incoming-webhook URL "
                         "(https://hooks.slack.com/services/…).")
    emails = forms.CharField(required=False, help_text="Email channel: addresses, comma-separated.")
    secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                             help_text="Webhook signing secret (whsec_…); empty: one is generated and shown once.")
    event_types = forms.MultipleChoiceField(
        required=False, label="Events", choices=[(t, t) for t in SUBSCRIBABLE_TYPES],
        initial=list(BUDGET_ALERT_TYPES), widget=forms.CheckboxSelectMultiple,
        help_text="What this channel is sent. Budget alerts are ticked by default; the key, rate-limit, denial "
        "and plan events are opt-in. The test alert always goes through.",
    )

    # Which kinds each field is for: the page shows only the chosen kind's (static/tokonomics/app.js).
    KINDS = {"url": "webhook slack", "emails": "email", "secret": "webhook"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, kinds in self.KINDS.items():
            self.fields[name].kinds = kinds  # type: ignore[attr-defined]  # read by the template

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        # Fields of another kind (filled before the kind changed, then hidden) are dropped, not refused.
        for name, kinds in self.KINDS.items():
            if kind and kind not in kinds.split():
                data[name] = ""
        # An edited Slack channel's URL comes back masked when unchanged: it was checked when it was stored.
        unchanged = data.get("url") == self.initial.get("url")
        if kind == AlertChannel.Kind.SLACK and data.get("url") and not unchanged \
                and (problem := slack_url_problem(data["url"])):
            self.add_error("url", f"This {problem}.")
        return data


def _event_types_posted(request: SignedInRequest, data: dict[str, Any]) -> list[str] | None:
    """The ticked event types; None when none came (a form with every box unticked sends nothing, as does a
    client that predates event types): a new channel then gets the default and an edited one keeps its own."""
    return data["event_types"] if "event_types" in request.POST else None


class RuleForm(forms.Form):
    scope = forms.ChoiceField(choices=AlertRule.Scope.choices)
    match = forms.CharField(max_length=200, initial="*", help_text="A value, or * for each one.")
    window_minutes = forms.IntegerField(min_value=1, max_value=1440, initial=15)
    multiplier = forms.DecimalField(min_value=1, max_digits=6, decimal_places=2, initial=5,
                                    help_text="Alert when spend runs this many times "
                                    "faster than its own trailing rate.")
    floor_usd = forms.DecimalField(min_value=0, max_digits=12, decimal_places=6, initial=1,
                                   help_text="Spend in the window below this never alerts.")


def _page(request: SignedInRequest, membership: Membership, *, channel_form: ChannelForm | None = None,
          rule_form: RuleForm | None = None, status: int = 200) -> HttpResponse:
    account = membership.account
    new_secret = shown_once_pop(request, kind="webhook_secret")
    event_type = _event_type_filter(request)
    events = AlertEvent.objects.filter(account=account)
    if event_type:
        events = events.filter(type=event_type)
    context = {
        "events": events.prefetch_related("deliveries__channel")[:25], "event_type": event_type,
        "event_types": AlertEvent.Type.values,
        "tab": "alerts", "membership": membership, "account": account,
        "channels": account.alert_channels.all(), "rules": account.alert_rules.all(),
        "channel_form": channel_form or ChannelForm(), "rule_form": rule_form or RuleForm(),
        "new_secret": new_secret, "can_manage": membership.can("manage_alerts"),
        "failing": AlertDelivery.objects.filter(event__account=account, next_attempt_at__isnull=False).count(),
    }
    response = render(request, "alerts/settings.html", context, status=status)
    if new_secret:
        response["Cache-Control"] = "no-store"
    return response


@require_GET
@login_required
def alert_settings(request: SignedInRequest, slug: str) -> HttpResponse:
    return _page(request, membership_get(request, slug))


def _event_type_filter(request: SignedInRequest) -> str:
    """The `type` asked for when it is a known one, else '' (every type): a query value is data."""
    wanted = request.GET.get("type", "")
    return wanted if wanted in AlertEvent.Type.values else ""


@require_POST
@login_required
def channel_create(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    form = ChannelForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        emails = [e.strip() for e in data["emails"].split(",") if e.strip()]
        try:
            channel, generated = alert_channel_create(account=membership.account, actor=Actor.of_user(request.user),
                                                      name=data["name"],
                                                      kind=data["kind"], url=data["url"], emails=emails,
                                                      secret=data["secret"] or None,
                                                      event_types=_event_types_posted(request, data))
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, f"Channel {channel.name} added.")
            if generated:  # shown once, on the page the redirect lands on: a refresh adds no second channel
                shown_once_stash(request, kind="webhook_secret", secret=generated, label=channel.name)
            return redirect("alert_settings", slug)
    return _page(request, membership, channel_form=form, status=400)


@require_POST
@login_required
def channel_test(request: SignedInRequest, slug: str, channel_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    channel = get_object_or_404(AlertChannel, pk=channel_id, account=membership.account)
    alert_test_send(channel=channel)
    messages.success(request, f"Test alert sent to {channel.name}; its delivery shows below.")
    return redirect("alert_settings", slug)


@require_POST
@login_required
def rule_create(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    form = RuleForm(request.POST)
    if form.is_valid():
        try:
            alert_rule_create(account=membership.account, actor=Actor.of_user(request.user),
                              **form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        except PermissionDenied as denied:
            form.add_error(None, str(denied))
        else:
            messages.success(request, "Burn-rate rule added.")
            return redirect("alert_settings", slug)
    return _page(request, membership, rule_form=form, status=400)


def _context(membership: Membership) -> dict[str, object]:
    return {"tab": "alerts", "membership": membership, "account": membership.account}


@require_http_methods(["GET", "POST"])
@login_required
def channel_delete(request: SignedInRequest, slug: str, channel_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    channel = get_object_or_404(AlertChannel, pk=channel_id, account=membership.account)
    if request.method == "GET":
        return confirm_page(request, context=_context(membership), title=f"Delete channel {channel.name}?",
                            message="Alerts stop going to it, and its delivery history is deleted with it. "
                                    "To pause it instead, disable it.",
                            confirm_label="Delete channel", cancel_url=reverse("alert_settings", args=[slug]))
    alert_channel_delete(account=membership.account, actor=Actor.of_user(request.user), channel=channel)
    messages.success(request, f"Channel {channel.name} deleted.")
    return redirect("alert_settings", slug)


@require_POST
@login_required
def channel_enable(request: SignedInRequest, slug: str, channel_id: int) -> HttpResponse:
    """Disable (enabled=0) or enable again: a disabled channel is sent nothing."""
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    channel = get_object_or_404(AlertChannel, pk=channel_id, account=membership.account)
    enabled = request.POST.get("enabled") == "1"
    alert_channel_update(account=membership.account, actor=Actor.of_user(request.user), channel=channel,
                         changes={"enabled": enabled})
    messages.success(request, f"Channel {channel.name} {'enabled' if enabled else 'disabled'}.")
    return redirect("alert_settings", slug)


@require_http_methods(["GET", "POST"])
@login_required
def rule_delete(request: SignedInRequest, slug: str, rule_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    rule = get_object_or_404(AlertRule, pk=rule_id, account=membership.account)
    if request.method == "GET":
        return confirm_page(request, context=_context(membership), title="Delete this rule?",
                            message=f"{rule}: it stops watching. To pause it instead, disable it.",
                            confirm_label="Delete rule", cancel_url=reverse("alert_settings", args=[slug]))
    alert_rule_delete(account=membership.account, actor=Actor.of_user(request.user), rule=rule)
    messages.success(request, "Rule deleted.")
    return redirect("alert_settings", slug)


@require_POST
@login_required
def rule_enable(request: SignedInRequest, slug: str, rule_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    rule = get_object_or_404(AlertRule, pk=rule_id, account=membership.account)
    enabled = request.POST.get("enabled") == "1"
    alert_rule_update(account=membership.account, actor=Actor.of_user(request.user), rule=rule,
                      changes={"enabled": enabled})
    messages.success(request, f"Rule {'enabled' if enabled else 'disabled'}.")
    return redirect("alert_settings", slug)


class ChannelEditForm(ChannelForm):
    def __init__(self, *args: Any, channel: AlertChannel, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"name": channel.name, "kind": channel.kind, "url": channel.url,
                                      "emails": ", ".join(channel.emails), "event_types": channel.event_types})
        super().__init__(*args, **kwargs)
        self.fields["kind"].disabled = True  # another kind is another channel: add it, then delete this one
        self.fields["url"].help_text += " A Slack URL shows masked: leave it as it is to keep it."
        self.fields["secret"].help_text = "Webhook signing secret (whsec_…); empty keeps the current one."


def _edit_page(request: SignedInRequest, membership: Membership, *, title: str, form: forms.Form,
               action: str) -> HttpResponse:
    context = {**_context(membership), "title": title, "form": form, "action": action}
    return render(request, "alerts/edit.html", context, status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@login_required
def channel_edit(request: SignedInRequest, slug: str, channel_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    channel = get_object_or_404(AlertChannel, pk=channel_id, account=membership.account)
    form = ChannelEditForm(request.POST if request.method == "POST" else None, channel=channel)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        changes: dict[str, Any] = {"name": data["name"], "event_types": _event_types_posted(request, data)}
        if channel.kind == AlertChannel.Kind.EMAIL:
            changes["emails"] = [e.strip() for e in data["emails"].split(",") if e.strip()]
        else:
            changes["url"] = data["url"]
        if data["secret"]:
            changes["secret"] = data["secret"]
        try:
            alert_channel_update(account=membership.account, actor=Actor.of_user(request.user),
                                 channel=AlertChannel.objects.get(pk=channel.pk), changes=changes)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, f"Channel {data['name']} saved.")
            return redirect("alert_settings", slug)
    return _edit_page(request, membership, title=f"Edit channel {channel.name}", form=form,
                      action=reverse("alert_channel_edit", args=[slug, channel.pk]))


@require_http_methods(["GET", "POST"])
@login_required
def rule_edit(request: SignedInRequest, slug: str, rule_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_alerts")
    rule = get_object_or_404(AlertRule, pk=rule_id, account=membership.account)
    initial = {name: getattr(rule, name) for name in RuleForm.base_fields}
    form = RuleForm(request.POST if request.method == "POST" else None, initial=initial)
    if form.is_bound and form.is_valid():
        try:
            alert_rule_update(account=membership.account, actor=Actor.of_user(request.user),
                              rule=AlertRule.objects.get(pk=rule.pk), changes=form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, "Burn-rate rule saved.")
            return redirect("alert_settings", slug)
    return _edit_page(request, membership, title=f"Edit rule on {rule.scope} {rule.match}", form=form,
                      action=reverse("alert_rule_edit", args=[slug, rule.pk]))

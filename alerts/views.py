"""Alert channels, burn-rate rules and the delivery log in the web app (admins manage; all see)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from alerts.events import alert_test_send
from alerts.models import AlertChannel, AlertDelivery, AlertEvent, AlertRule
from alerts.services import alert_channel_create, alert_rule_create
from billing.accounts.access import Membership, membership_get
from tokonomics.audit import Actor
from tokonomics.validation import form_errors_from
from tokonomics.web_request import SignedInRequest


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=AlertChannel.Kind.choices)
    url = forms.URLField(required=False, max_length=500, assume_scheme="https", help_text="Webhook or Slack URL.")
    emails = forms.CharField(required=False, help_text="Email channel: addresses, comma-separated.")
    secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                             help_text="Webhook signing secret (whsec_…); empty: one is generated and shown once.")


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
          rule_form: RuleForm | None = None, new_secret: str | None = None, status: int = 200) -> HttpResponse:
    account = membership.account
    events = AlertEvent.objects.filter(account=account).prefetch_related("deliveries__channel")[:25]
    context = {
        "tab": "alerts", "membership": membership, "account": account,
        "channels": account.alert_channels.all(), "rules": account.alert_rules.all(), "events": events,
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
                                                      secret=data["secret"] or None)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, f"Channel {channel.name} added.")
            return _page(request, membership, new_secret=generated)
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

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tokonomics.admin_writes import ServiceWritesAdmin, admin_actor

from .events import alert_test_send
from .models import AlertChannel, AlertDelivery, AlertEvent, AlertRule
from .services import (
    alert_channel_create,
    alert_channel_delete,
    alert_channel_update,
    alert_rule_create,
    alert_rule_delete,
    alert_rule_update,
)


class AlertChannelForm(forms.ModelForm):
    # The service stores a Slack URL encrypted (shown masked) and the secret encrypted: neither is ever shown.
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Webhook signing secret (whsec_…), write-only. Empty: kept, or on a new webhook channel "
                  "generated and shown once.",
    )

    class Meta:
        model = AlertChannel
        fields = ["account", "name", "kind", "url", "emails"]


def _channel_ids(channels: QuerySet | None) -> list[int]:
    return [channel.pk for channel in channels or ()]


@admin.register(AlertChannel)
class AlertChannelAdmin(ServiceWritesAdmin[AlertChannel]):
    form = AlertChannelForm
    list_display = ["name", "account", "kind", "target", "has_secret", "created_at"]
    list_filter = ["kind", "account"]
    search_fields = ["name", "account__slug", "url"]
    autocomplete_fields = ["account"]
    actions = ["send_test_alert"]

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> AlertChannel:
        channel, generated = alert_channel_create(
            account=data["account"], actor=admin_actor(request), name=data["name"], kind=data["kind"],
            url=data["url"], emails=data["emails"] or [], secret=data["secret"] or None,
        )
        # Kept on the request only: response_add shows it once, nothing stores it in the clear.
        request._tokonomics_new_secret = generated  # type: ignore[attr-defined]
        return channel

    def service_update(self, request: HttpRequest, stored: AlertChannel, changes: dict[str, Any]) -> None:
        if not changes.get("secret"):
            changes.pop("secret", None)  # empty: keep the stored one
        if "kind" in changes:
            changes.setdefault("url", stored.url)  # set_url decides what a new kind keeps of it
        if changes:
            alert_channel_update(account=stored.account, actor=admin_actor(request), channel=stored, changes=changes)

    def service_delete(self, request: HttpRequest, obj: AlertChannel) -> None:
        alert_channel_delete(account=obj.account, actor=admin_actor(request), channel=obj)

    def response_add(self, request: HttpRequest, obj: AlertChannel, post_url_continue: str | None = None
                     ) -> HttpResponse:
        secret = getattr(request, "_tokonomics_new_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "channel": obj,
                   "secret": secret, "title": "Copy the signing secret now"}
        response = TemplateResponse(request, "admin/alerts/alertchannel/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Send a test alert", permissions=["change"])
    def send_test_alert(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        for channel in queryset:
            alert_test_send(channel=channel)
        self.message_user(request, f"Sent a test alert to {queryset.count()} channel(s); see Alert deliveries.")

    @admin.display(description="Target")
    def target(self, obj: AlertChannel) -> str:
        return obj.url if obj.kind != AlertChannel.Kind.EMAIL else ", ".join(obj.emails)

    @admin.display(boolean=True, description="Signing secret")
    def has_secret(self, obj: AlertChannel) -> bool:
        return bool(obj.secret_encrypted)


@admin.register(AlertRule)
class AlertRuleAdmin(ServiceWritesAdmin[AlertRule]):
    list_display = ["account", "kind", "scope", "match", "window_minutes", "multiplier", "floor_usd"]
    list_filter = ["kind", "scope", "account"]
    autocomplete_fields = ["account"]
    filter_horizontal = ["channels"]
    create_only_fields = ("account", "kind")

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> AlertRule:
        return alert_rule_create(
            account=data["account"], actor=admin_actor(request), scope=data["scope"], kind=data["kind"],
            match=data["match"], window_minutes=data["window_minutes"], multiplier=data["multiplier"],
            floor_usd=data["floor_usd"], channel_ids=_channel_ids(data["channels"]),
        )

    def service_update(self, request: HttpRequest, stored: AlertRule, changes: dict[str, Any]) -> None:
        if "channels" in changes:
            changes["channel_ids"] = _channel_ids(changes.pop("channels"))
        alert_rule_update(account=stored.account, actor=admin_actor(request), rule=stored, changes=changes)

    def service_delete(self, request: HttpRequest, obj: AlertRule) -> None:
        alert_rule_delete(account=obj.account, actor=admin_actor(request), rule=obj)


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    readonly_fields = [
        "channel", "attempt", "succeeded", "status_code", "error", "duration_ms", "next_attempt_at", "created_at"
    ]
    fields = tuple(readonly_fields)


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "account", "type", "dedupe_key", "webhook_id"]
    list_filter = ["type", "account"]
    search_fields = ["dedupe_key", "webhook_id", "account__slug"]
    readonly_fields = ["account", "type", "dedupe_key", "webhook_id", "payload", "created_at"]
    inlines = [AlertDeliveryInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event", "channel", "attempt", "succeeded", "status_code", "next_attempt_at"]
    list_filter = ["succeeded", "channel__kind"]
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from .events import alert_test_send
from .models import AlertChannel, AlertDelivery, AlertEvent, AlertRule


class AlertChannelForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if ("url" in self.changed_data or "kind" in self.changed_data) and "url" in data and "kind" in data:
            try:  # a Slack URL is stored encrypted, shown masked; no other kind keeps one
                self.instance.set_url(data["url"], kind=data["kind"])
            except ValidationError as error:
                self.add_error(None, error)
            else:
                data["url"] = self.instance.url  # what the form writes back: the masked form for Slack
        return data


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["name", "account", "kind", "target", "has_secret", "created_at"]
    list_filter = ["kind", "account"]
    search_fields = ["name", "account__slug", "url"]
    autocomplete_fields = ["account"]
    actions = ["send_test_alert"]

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
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["account", "kind", "scope", "match", "window_minutes", "multiplier", "floor_usd"]
    list_filter = ["kind", "scope", "account"]
    autocomplete_fields = ["account"]
    filter_horizontal = ["channels"]


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

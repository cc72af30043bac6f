from __future__ import annotations

from django.contrib import admin

from .models import AlertChannel, AlertRule


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "kind", "target", "has_secret", "created_at"]
    list_filter = ["kind", "account"]
    search_fields = ["name", "account__slug", "url"]
    autocomplete_fields = ["account"]

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

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.utils import timezone

from .models import Account, Budget, ManagementToken, Plan, PriceOverride, Seat, UsageRecord
from .repricing import usage_record_reprice


def usd(amount: Decimal | None, places: int = 2) -> str:
    if amount is None:
        return "unknown"
    return f"${amount:,.{places}f}"


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name", "price", "max_seats", "max_alert_rules", "retention_days", "monthly_request_limit", "sso",
        "white_label",
    ]
    prepopulated_fields = {"slug": ["name"]}

    @admin.display(description="Price / month", ordering="price_usd_month")
    def price(self, obj: Plan) -> str:
        return usd(obj.price_usd_month)


class SeatInline(admin.TabularInline):
    model = Seat
    extra = 0
    autocomplete_fields = ["user"]


class BudgetInline(admin.TabularInline):
    model = Budget
    extra = 0
    fields = ["scope", "match", "period", "limit_usd", "hard", "alert_at"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "plan", "timezone", "retention", "created_at"]
    list_filter = ["plan", "on_redis_unavailable"]
    search_fields = ["slug", "name"]
    inlines = [SeatInline, BudgetInline]
    fieldsets = [
        (None, {"fields": ["slug", "name", "plan", "timezone"]}),
        ("Policy", {"fields": ["retention_days", "on_redis_unavailable", "allow_unmetered_routes",
                               "allow_unpriced_models"]}),
        ("White-label", {"fields": ["brand_name", "brand_logo_url", "brand_accent_color"]}),
    ]

    @admin.display(description="Retention")
    def retention(self, obj: Account) -> str:
        suffix = "" if obj.retention_days else " (plan)"
        return f"{obj.effective_retention_days} days{suffix}"


@admin.register(Seat)
class SeatAdmin(admin.ModelAdmin):
    list_display = ["user", "account", "role", "created_at"]
    list_filter = ["role", "account"]
    search_fields = ["user__email", "user__username", "account__slug"]
    autocomplete_fields = ["user", "account"]


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["account", "scope", "match", "period", "limit", "hard", "alert_at"]
    list_filter = ["scope", "period", "hard", "account"]
    search_fields = ["account__slug", "match"]
    autocomplete_fields = ["account"]
    filter_horizontal = ["channels"]

    @admin.display(description="Limit", ordering="limit_usd")
    def limit(self, obj: Budget) -> str:
        return usd(obj.limit_usd)


@admin.register(PriceOverride)
class PriceOverrideAdmin(admin.ModelAdmin):
    list_display = ["account", "provider", "model", "input_per_mtok", "output_per_mtok", "updated_at"]
    list_filter = ["account", "provider"]
    search_fields = ["model", "account__slug"]
    autocomplete_fields = ["account"]


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "created_at", "account", "provider", "model", "feature", "tenant", "input_tokens", "output_tokens",
        "cost", "status_code", "usage_source",
    ]
    list_filter = ["account", "provider", "status_code", "usage_source", "streamed", "environment"]
    search_fields = ["request_id", "model", "feature", "tenant"]
    date_hierarchy = "created_at"
    list_select_related = ["account"]
    show_full_result_count = False  # an exact COUNT(*) over millions of rows is slower than the page
    actions = ["reprice"]

    @admin.action(description="Re-price selected records with current prices and overrides")
    def reprice(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        seen, changed = usage_record_reprice(records=queryset)
        self.message_user(request, f"Re-priced {seen} record(s); {changed} cost(s) changed.")

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return [f.name for f in UsageRecord._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    @admin.display(description="Cost", ordering="cost_usd")
    def cost(self, obj: UsageRecord) -> str:
        return usd(obj.cost_usd, 6)


@admin.register(ManagementToken)
class ManagementTokenAdmin(admin.ModelAdmin):
    """Tokens are created with `createmanagementtoken` (the plaintext is printed once); here they
    are listed and revoked."""

    list_display = ["name", "prefix", "account", "role", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["role", "account", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "account__slug"]
    readonly_fields = ["account", "name", "prefix", "role", "created_at", "last_used_at"]
    fields = ["account", "name", "prefix", "role", "created_at", "last_used_at", "expires_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).")

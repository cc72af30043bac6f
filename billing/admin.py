from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing.models import Invitation
from billing.sso.domains import sso_domain_approve
from billing.usage.deadletters import usage_dead_letter_replay
from billing.usage.repricing import usage_record_reprice
from tokonomics.web_request import SignedInRequest

from .models import Account, Budget, ManagementToken, Plan, PriceOverride, Seat, SsoDomain, UsageDeadLetter, UsageRecord


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

    @admin.action(description="Re-price selected records with current prices and overrides", permissions=["change"])
    def reprice(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> None:
        seen, changed = usage_record_reprice(records=queryset)
        self.message_user(request, f"Re-priced {seen} record(s); {changed} cost(s) changed.")

    def get_readonly_fields(self, request: HttpRequest, obj: UsageRecord | None = None) -> list[str]:
        return [f.name for f in UsageRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ManagementToken]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations to seats, to look at: accounts' admins invite and withdraw on their team page, audited."""

    list_display = ["email", "account", "role", "status", "inviter_label", "created_at", "expires_at"]
    list_filter = ["status", "role"]
    search_fields = ["email", "account__slug", "account__name"]
    list_select_related = ["account"]
    fields: ClassVar[tuple[str, ...]] = (
        "account", "email", "role", "status", "inviter", "inviter_label", "created_at", "expires_at",
        "accepted_at", "accepted_by", "revoked_at", "revoked_by",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Invitation | None = None) -> tuple[str, ...]:
        return self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the link's token exists only when a service creates the row

    def has_delete_permission(self, request: HttpRequest, obj: Invitation | None = None) -> bool:
        return False  # withdrawing is the audited way to close one


@admin.register(UsageDeadLetter)
class UsageDeadLetterAdmin(admin.ModelAdmin):
    """Usage events the ledger set aside: read the reason, repair the raw event, replay it."""

    list_display = ["created_at", "account", "request_id", "reason", "stream", "entry_id", "replayed_at"]
    list_filter = [("replayed_at", admin.EmptyFieldListFilter), "account"]
    search_fields = ["request_id", "reason", "account__slug"]
    readonly_fields = ["account", "stream", "entry_id", "request_id", "reason", "created_at", "replayed_at"]
    fields = ["raw", *readonly_fields]
    list_select_related = ["account"]
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Replay selected dead letters into the usage records", permissions=["change"])
    def replay(self, request: SignedInRequest, queryset: QuerySet[UsageDeadLetter]) -> None:
        replayed, failed = usage_dead_letter_replay(dead_letters=queryset.select_related("account"), actor=request.user)
        self.message_user(request, f"Replayed {replayed} event(s); {failed} still failing (see their reason).")


@admin.register(SsoDomain)
class SsoDomainAdmin(admin.ModelAdmin):
    """Email-domain claims of accounts' SSO. Approving one is the operator's proof that the account
    controls the domain; a claim is otherwise verified by the confirmation link its admins can mail."""

    list_display = ["domain", "account", "status", "verified_by", "verified_at", "confirmation_sent_to", "created_at"]
    list_filter = ["status"]
    search_fields = ["domain", "config__account__slug", "config__account__name"]
    list_select_related = ["config__account"]
    fields: ClassVar[tuple[str, ...]] = (
        "config", "domain", "status", "verified_by", "verified_at", "confirmation_sent_to", "created_at"
    )
    actions = ["approve"]

    def get_readonly_fields(self, request: HttpRequest, obj: SsoDomain | None = None) -> tuple[str, ...]:
        # Changed through the services only, so every change is audited and the one-account rule explained.
        return self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SsoDomain | None = None) -> bool:
        return False  # an account's owners drop claims in its settings, audited; a pending one blocks nobody

    @admin.display(description="Account", ordering="config__account__slug")
    def account(self, obj: SsoDomain) -> str:
        return str(obj.config.account)

    @admin.action(description="Approve selected domain claims (I checked the account controls them)",
                  permissions=["change"])
    def approve(self, request: SignedInRequest, queryset: QuerySet[SsoDomain]) -> None:
        for claim in queryset.select_related("config__account"):
            try:
                sso_domain_approve(claim=claim, actor=request.user)
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), level=messages.ERROR)
            else:
                self.message_user(request, f"{claim.domain} is verified for {claim.config.account}.")

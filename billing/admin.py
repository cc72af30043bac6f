from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.accounts.management_tokens import management_token_revoke
from billing.accounts.services import (
    ACCOUNT_FIELDS,
    BRANDING_FIELDS,
    CACHE_FIELDS,
    PRICE_FIELDS,
    account_cache_update,
    account_create,
    account_update,
    price_override_delete,
    price_override_set,
)
from billing.accounts.team import seat_delete, seat_set
from billing.budgets.services import budget_create, budget_delete, budget_update
from billing.models import Invitation
from billing.sso.domains import sso_domain_approve
from billing.usage.deadletters import usage_dead_letter_repair, usage_dead_letter_replay
from billing.usage.repricing import usage_record_reprice
from tokonomics.admin_writes import ServiceWritesAdmin, admin_actor
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


class ReadOnlyInline(admin.TabularInline):
    """A listing inside the account's page (every field read-only): each row is changed on its own page,
    through the audited services (a formset would write the rows directly)."""

    extra = 0
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        return False


class SeatInline(ReadOnlyInline):
    model = Seat
    fields = readonly_fields = ("user", "role", "created_at")


class BudgetInline(ReadOnlyInline):
    model = Budget
    fields = readonly_fields = ("scope", "match", "period", "limit_usd", "hard", "alert_at")


@admin.register(Account)
class AccountAdmin(ServiceWritesAdmin[Account]):
    """Created and changed through account_create / account_update, so the account's log shows the operator's
    change. The slug names the account in URLs and config files: set once."""

    list_display = ["slug", "name", "plan", "timezone", "retention", "created_at"]
    list_filter = ["plan", "on_redis_unavailable"]
    search_fields = ["slug", "name"]
    inlines = [SeatInline, BudgetInline]
    fieldsets = [
        (None, {"fields": ["slug", "name", "plan", "timezone"]}),
        ("Policy", {"fields": ["retention_days", "on_redis_unavailable", "allow_unmetered_routes",
                               "allow_unpriced_models"]}),
        ("Response cache", {"fields": list(CACHE_FIELDS)}),
        ("White-label", {"fields": ["brand_name", "brand_logo_url", "brand_accent_color"]}),
    ]
    create_only_fields = ("slug",)

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> Account:
        fields = {name: data[name] for name in ACCOUNT_FIELDS - {"name", "plan"} if name in data}
        return account_create(actor=admin_actor(request), slug=data["slug"], name=data["name"], plan=data["plan"],
                              **fields)

    def service_update(self, request: HttpRequest, stored: Account, changes: dict[str, Any]) -> None:
        # Two entries when both change, as the settings page and its branding page log them.
        branding = {name: value for name, value in changes.items() if name in BRANDING_FIELDS}
        cache = {name: value for name, value in changes.items() if name in CACHE_FIELDS}
        settings = {name: value for name, value in changes.items() if name not in (*BRANDING_FIELDS, *CACHE_FIELDS)}
        if cache:
            account_cache_update(account=stored, actor=admin_actor(request), changes=cache)
        if settings:
            account_update(account=stored, actor=admin_actor(request), changes=settings)
        if branding:
            account_update(account=stored, actor=admin_actor(request), changes=branding,
                           action="account.branding_changed")

    def service_delete(self, request: HttpRequest, obj: Account) -> None:
        # No service: the account's audit log is deleted with it, so no entry there could record this; Django's
        # admin log keeps who did it.
        obj.delete()

    @admin.display(description="Retention")
    def retention(self, obj: Account) -> str:
        suffix = "" if obj.retention_days else " (plan)"
        return f"{obj.effective_retention_days} days{suffix}"


@admin.register(Seat)
class SeatAdmin(ServiceWritesAdmin[Seat]):
    """Seats as a config file sets them (seat_set: no invitation, no role ranking) and removed like the team
    page removes them, never the last owner."""

    list_display = ["user", "account", "role", "created_at"]
    list_filter = ["role", "account"]
    search_fields = ["user__email", "user__username", "account__slug"]
    autocomplete_fields = ["user", "account"]
    create_only_fields = ("account", "user")

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> Seat:
        return seat_set(account=data["account"], actor=admin_actor(request), user=data["user"], role=data["role"])[0]

    def service_update(self, request: HttpRequest, stored: Seat, changes: dict[str, Any]) -> None:
        seat_set(account=stored.account, actor=admin_actor(request), user=stored.user, role=changes["role"])

    def service_delete(self, request: HttpRequest, obj: Seat) -> None:
        seat_delete(account=obj.account, actor=admin_actor(request), seat=obj)


def _channel_ids(channels: QuerySet | None) -> list[int]:
    return [channel.pk for channel in channels or ()]


@admin.register(Budget)
class BudgetAdmin(ServiceWritesAdmin[Budget]):
    list_display = ["account", "scope", "match", "period", "limit", "hard", "alert_at"]
    list_filter = ["scope", "period", "hard", "account"]
    search_fields = ["account__slug", "match"]
    autocomplete_fields = ["account"]
    filter_horizontal = ["channels"]

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> Budget:
        return budget_create(account=data["account"], actor=admin_actor(request), scope=data["scope"],
                             period=data["period"], limit_usd=data["limit_usd"], match=data["match"],
                             hard=data["hard"], alert_at=data["alert_at"], channel_ids=_channel_ids(data["channels"]))

    def service_update(self, request: HttpRequest, stored: Budget, changes: dict[str, Any]) -> None:
        if "channels" in changes:
            changes["channel_ids"] = _channel_ids(changes.pop("channels"))
        budget_update(account=stored.account, actor=admin_actor(request), budget=stored, changes=changes)

    def service_delete(self, request: HttpRequest, obj: Budget) -> None:
        budget_delete(account=obj.account, actor=admin_actor(request), budget=obj)

    @admin.display(description="Limit", ordering="limit_usd")
    def limit(self, obj: Budget) -> str:
        return usd(obj.limit_usd)


@admin.register(PriceOverride)
class PriceOverrideAdmin(ServiceWritesAdmin[PriceOverride]):
    list_display = ["account", "provider", "model", "input_per_mtok", "output_per_mtok", "updated_at"]
    list_filter = ["account", "provider"]
    search_fields = ["model", "account__slug"]
    autocomplete_fields = ["account"]
    create_only_fields = ("account", "provider", "model")

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> PriceOverride:
        return price_override_set(account=data["account"], actor=admin_actor(request), provider=data["provider"],
                                  model=data["model"], prices={name: data[name] for name in PRICE_FIELDS})[0]

    def service_update(self, request: HttpRequest, stored: PriceOverride, changes: dict[str, Any]) -> None:
        price_override_set(account=stored.account, actor=admin_actor(request), provider=stored.provider,
                           model=stored.model, prices=changes)

    def service_delete(self, request: HttpRequest, obj: PriceOverride) -> None:
        price_override_delete(account=obj.account, actor=admin_actor(request), price=obj)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "created_at", "account", "labels__provider", "labels__model", "labels__feature", "tenant",
        "input_tokens", "output_tokens", "cost", "status_code", "labels__usage_source",
    ]
    list_filter = ["account", "labels__provider", "status_code", "labels__usage_source", "streamed",
                   "labels__environment"]
    search_fields = ["request_id", "labels__model", "labels__feature", "tenant"]
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
    are listed and revoked, audited. Nothing else about one changes here: no service does it."""

    list_display = ["name", "prefix", "account", "role", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["role", "account", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "account__slug"]
    fields = ("account", "name", "prefix", "role", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ManagementToken | None = None) -> bool:
        return False  # revoking is the audited way to end one

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ManagementToken]) -> None:
        # One service call per token: each revocation is audited in its own account, with the operator as actor.
        tokens = list(queryset.filter(revoked_at__isnull=True).select_related("account"))
        for token in tokens:
            management_token_revoke(account=token.account, actor=admin_actor(request), token=token)
        self.message_user(request, f"Revoked {len(tokens)} token(s).")


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

    def save_model(self, request: HttpRequest, obj: UsageDeadLetter, form: Any, change: bool) -> None:
        # A repair goes through its service, so it is in the account's audit log like the replay after it.
        stored = UsageDeadLetter.objects.get(pk=obj.pk)
        usage_dead_letter_repair(letter=stored, actor=admin_actor(request), raw=obj.raw)

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

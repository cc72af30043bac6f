"""Team, invitations, account settings and the audit log. Every account view starts from
billing.accounts.access.membership_get; the services record every change in the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.accounts import services as account_services
from billing.accounts import team as team_services
from billing.accounts.access import Membership, membership_get
from billing.accounts.forms import (
    AccountSettingsForm,
    BrandingForm,
    CacheSettingsForm,
    InvitationSignUpForm,
    InviteForm,
    PasswordLoginForm,
    SeatRoleForm,
    SsoConfigForm,
)
from billing.accounts.team import InvitationError, SentInvitation
from billing.models import AuditEntry, Invitation, Plan, Seat, SsoConfig, SsoDomain
from billing.sso import domains as sso_domains
from billing.sso.services import redirect_uri
from tokonomics.responses import after_change, confirm_page
from tokonomics.validation import form_errors_from
from tokonomics.web_request import HtmxRequest, SignedInRequest

AUDIT_PAGE_SIZE = 50
# Admins may look at the settings (RIGHTS has no narrower read right for them); only owners change them.
SETTINGS_READ_RIGHT = "view_audit"


# --- the team page -------------------------------------------------------------------------------


def _team_page(request: SignedInRequest, membership: Membership, *, invite_form: InviteForm | None = None,
               sent: SentInvitation | None = None, notice: str = "", problem: str = "",
               status: int = 200) -> HttpResponse:
    account = membership.account
    roles = team_services.assignable_roles(actor_seat=membership.seat)
    can_manage = membership.can("manage_seats")
    context = {
        "tab": "team", "membership": membership, "account": account,
        # A seat is editable here when its current role is one the caller may give (owners: by owners only).
        "rows": [(seat, can_manage and seat.role in roles)
                 for seat in account.seats.select_related("user").order_by("created_at", "pk")],
        "invitations": team_services.invitation_list_pending(account=account),
        "invite_form": invite_form or InviteForm(roles=roles),
        "role_choices": [(value, label) for value, label in Seat.Role.choices if value in roles],
        "can_manage": can_manage, "sent": sent, "notice": notice, "problem": problem,
    }
    response = render(request, "billing/team.html#team" if request.htmx else "billing/team.html", context,
                      status=status)
    if sent is not None:
        response["Cache-Control"] = "no-store"  # the page holds the invitation link
    return response


def _after_team_change(request: SignedInRequest, membership: Membership, *, notice: str = "",
                       problem: str = "") -> HttpResponse:
    if request.htmx:
        return _team_page(request, membership, notice=notice, problem=problem)
    if problem:
        messages.error(request, problem)
    else:
        messages.success(request, notice)
    return redirect("team", membership.account.slug)


@require_GET
@login_required
def team(request: SignedInRequest, slug: str) -> HttpResponse:
    return _team_page(request, membership_get(request, slug))


@require_POST
@login_required
def seat_invite(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_seats")
    form = InviteForm(request.POST, roles=team_services.assignable_roles(actor_seat=membership.seat))
    if form.is_valid():
        try:
            sent = team_services.seat_invite(actor_seat=membership.seat, **form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            # Rendered, never redirected: the link is shown this once.
            return _team_page(request, membership, sent=sent)
    return _team_page(request, membership, invite_form=form, status=200 if request.htmx else 400)


@require_http_methods(["GET", "POST"])
@login_required
def invitation_withdraw(request: SignedInRequest, slug: str, invitation_id: int) -> HttpResponse:
    """GET: the confirm step (without JavaScript; HTMX asks with hx-confirm and posts); POST: withdraw."""
    membership = membership_get(request, slug)
    membership.require("manage_seats")
    if request.method == "GET":
        invitation = get_object_or_404(Invitation, pk=invitation_id, account=membership.account)
        return confirm_page(request, context=_confirm_context(membership),
                            title=f"Withdraw the invitation to {invitation.email}?",
                            message="Its link stops working; you can invite again later.",
                            confirm_label="Withdraw invitation", cancel_url=reverse("team", args=[slug]))
    try:
        invitation = team_services.invitation_withdraw(actor_seat=membership.seat, invitation_id=invitation_id)
    except ValidationError as error:
        return _after_team_change(request, membership, problem=" ".join(error.messages))
    return _after_team_change(request, membership, notice=f"The invitation to {invitation.email} was withdrawn.")


def _confirm_context(membership: Membership) -> dict[str, Any]:
    return {"tab": "team", "membership": membership, "account": membership.account}


def _seat_get(membership: Membership, seat_id: int) -> Seat:
    return get_object_or_404(Seat.objects.select_related("user", "account"), pk=seat_id, account=membership.account)


@require_POST
@login_required
def seat_update(request: SignedInRequest, slug: str, seat_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_seats")
    seat = _seat_get(membership, seat_id)
    form = SeatRoleForm(request.POST)
    if not form.is_valid():
        return _after_team_change(request, membership, problem="Choose one of the roles.")
    try:
        team_services.seat_role_update(actor_seat=membership.seat, seat=seat, role=form.cleaned_data["role"])
    except ValidationError as error:
        return _after_team_change(request, membership, problem=" ".join(error.messages))
    # Read again: the caller may just have changed their own role.
    return _after_team_change(request, membership_get(request, slug), notice=f"{seat.user.email} is now {seat.role}.")


@require_http_methods(["GET", "POST"])
@login_required
def seat_remove(request: SignedInRequest, slug: str, seat_id: int) -> HttpResponse:
    """GET: the confirm step (without JavaScript; HTMX asks with hx-confirm and posts); POST: remove."""
    membership = membership_get(request, slug)
    membership.require("manage_seats")
    seat = _seat_get(membership, seat_id)
    if request.method == "GET":
        leaving = seat.user_id == request.user.pk
        return confirm_page(request, context=_confirm_context(membership),
                            title=f"Leave {membership.account.name}?" if leaving
                            else f"Remove the seat of {seat.user.email}?",
                            message="Nothing of the account stays visible to them; keys they created keep working "
                                    "until revoked.",
                            confirm_label="Leave" if leaving else "Remove seat",
                            cancel_url=reverse("team", args=[slug]))
    try:
        team_services.seat_remove(actor_seat=membership.seat, seat=seat)
    except ValidationError as error:
        return _after_team_change(request, membership, problem=" ".join(error.messages))
    if seat.user_id == request.user.pk:  # left the account: nothing of it is visible any more
        messages.success(request, f"You left {membership.account.name}.")
        return after_change(request, reverse("home"))
    return _after_team_change(request, membership, notice=f"{seat.user.email} no longer has a seat.")


# --- accepting an invitation (top-level: the invitee has no seat yet) --------------------------------


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HtmxRequest, token: str) -> HttpResponse:
    try:
        invitation = team_services.invitation_get(token=token)
    except InvitationError as error:
        return render(request, "billing/invitation_invalid.html", {"problem": str(error)}, status=400)
    # The invitee sees the inviting account's brand, without its navigation (they hold no seat yet).
    request.tokonomics_account = invitation.account  # type: ignore[attr-defined]  # for branding
    has_user = get_user_model().objects.filter(email__iexact=invitation.email).exists()
    signin_form = PasswordLoginForm(request, initial={"username": invitation.email})
    signup_form = InvitationSignUpForm(email=invitation.email)
    problem, status = "", 200
    if request.method == "POST":
        step = request.POST.get("step")
        try:
            if step == "accept" and request.user.is_authenticated:
                team_services.invitation_accept(token=token, user=request.user)
                return _joined(request, invitation)
            if step == "signin" and not request.user.is_authenticated:
                data = request.POST.copy()
                data["username"] = invitation.email  # the invitation's address, whatever was posted
                signin_form = PasswordLoginForm(request, data=data)
                if signin_form.is_valid():
                    team_services.invitation_accept(token=token, user=signin_form.get_user())
                    login(request, signin_form.get_user())
                    return _joined(request, invitation)
            if step == "signup" and not request.user.is_authenticated and not has_user:
                signup_form = InvitationSignUpForm(request.POST, email=invitation.email)
                if signup_form.is_valid():
                    seat = team_services.invitation_accept(token=token, user=None,
                                                           new_password=signup_form.cleaned_data["password1"])
                    login(request, seat.user, backend="django.contrib.auth.backends.ModelBackend")
                    return _joined(request, invitation)
        except (InvitationError, ValidationError) as error:
            problem = str(error) if isinstance(error, InvitationError) else " ".join(error.messages)
        status = 400
    context = {"invitation": invitation, "has_user": has_user, "signin_form": signin_form,
               "signup_form": signup_form, "problem": problem, "current_account": None,
               "email_matches": request.user.is_authenticated
               and (request.user.email or "").lower() == invitation.email}
    return render(request, "billing/invitation_accept.html", context, status=status)


def _joined(request: HtmxRequest, invitation: Invitation) -> HttpResponse:
    messages.success(request, f"Welcome to {invitation.account.name}.")
    return redirect("dashboard", invitation.account.slug)


# --- account settings ------------------------------------------------------------------------------


def _settings_page(request: SignedInRequest, membership: Membership, *, partial: str = "", status: int = 200,
                   **forms: Any) -> HttpResponse:
    account = membership.account
    config = SsoConfig.objects.filter(account=account).first()
    can_edit = membership.can("manage_account")
    page_forms = {
        "settings_form": forms.get("settings_form") or AccountSettingsForm(account=account),
        "branding_form": forms.get("branding_form") or BrandingForm(account=account),
        "cache_form": forms.get("cache_form") or CacheSettingsForm(account=account),
        "sso_form": forms.get("sso_form") or SsoConfigForm(config=config),
    }
    if not can_edit:
        for form in page_forms.values():
            for field in form.fields.values():
                field.disabled = True
    cheapest = Plan.objects.order_by("price_usd_month")
    context = {
        "tab": "settings", "membership": membership, "account": account, "plan": account.plan,
        "can_edit": can_edit, **page_forms,
        "sso_config": config, "redirect_uri": redirect_uri(),
        "sso_domains": list(config.domains.all()) if config else [],
        "confirmation_mailboxes": sso_domains.CONFIRMATION_MAILBOXES, "seat_count": account.seats.count(),
        "sso_plan": cheapest.filter(sso=True).first(), "white_label_plan": cheapest.filter(white_label=True).first(),
    }
    template = f"billing/settings.html#{partial}" if request.htmx and partial else "billing/settings.html"
    return render(request, template, context, status=status)


@require_GET
@login_required
def account_settings(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require(SETTINGS_READ_RIGHT)
    return _settings_page(request, membership)


def _settings_invalid(request: SignedInRequest, membership: Membership, partial: str, form_name: str,
                      form: Any) -> HttpResponse:
    return _settings_page(request, membership, partial=partial, status=200 if request.htmx else 400,
                          **{form_name: form})


@require_POST
@login_required
def account_settings_update(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_account")
    form = AccountSettingsForm(request.POST, account=membership.account)
    if form.is_valid():
        try:
            account_services.account_settings_update(account=membership.account, actor=request.user,
                                                     **form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, "Account settings saved.")
            return after_change(request, reverse("account_settings", args=[slug]))
    return _settings_invalid(request, membership, "settings-form", "settings_form", form)


@require_POST
@login_required
def cache_settings_update(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_account")
    form = CacheSettingsForm(request.POST, account=membership.account)
    if form.is_valid():
        try:
            account_services.account_cache_update(account=membership.account, actor=request.user,
                                                  changes=form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, "Response cache settings saved.")
            return after_change(request, reverse("account_settings", args=[slug]))
    return _settings_invalid(request, membership, "cache-form", "cache_form", form)


@require_POST
@login_required
def branding_update(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_account")
    if not membership.account.plan.white_label:
        return HttpResponse(f"White-label is not part of the {membership.account.plan.name} plan.", status=403,
                            content_type="text/plain")
    form = BrandingForm(request.POST, account=membership.account)
    if form.is_valid():
        try:
            account_services.account_branding_update(account=membership.account, actor=request.user,
                                                     **form.cleaned_data)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, "Branding saved.")
            return after_change(request, reverse("account_settings", args=[slug]))
    return _settings_invalid(request, membership, "branding-form", "branding_form", form)


@require_POST
@login_required
def sso_config_update(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_account")
    account = membership.account
    if not account.plan.sso:
        return HttpResponse(f"Single sign-on is not part of the {account.plan.name} plan.", status=403,
                            content_type="text/plain")
    form = SsoConfigForm(request.POST, config=SsoConfig.objects.filter(account=account).first())
    if form.is_valid():
        try:
            secret = form.cleaned_data["client_secret"] or None
            account_services.sso_config_update(account=account, actor=request.user,
                                               **{**form.cleaned_data, "client_secret": secret})
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, "Single sign-on settings saved.")
            return after_change(request, reverse("account_settings", args=[slug]))
    return _settings_invalid(request, membership, "sso-form", "sso_form", form)


@require_POST
@login_required
def sso_domain_confirmation_send(request: SignedInRequest, slug: str, domain_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_account")
    claim = get_object_or_404(SsoDomain, pk=domain_id, config__account=membership.account)
    try:
        address = sso_domains.sso_domain_confirmation_send(claim=claim, actor=request.user,
                                                           mailbox=request.POST.get("mailbox", ""))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"A confirmation link for {claim.domain} was sent to {address}.")
    return redirect("account_settings", slug)


# --- the audit log --------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _changes(entry: AuditEntry) -> list[tuple[str, str, str]]:
    before, after = entry.before or {}, entry.after or {}
    return [(name, _shown(before.get(name)), _shown(after.get(name))) for name in sorted(set(before) | set(after))]


@require_GET
@login_required
def audit_log(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("view_audit")
    entries = AuditEntry.objects.filter(account=membership.account).order_by("-created_at", "-pk")
    action = request.GET.get("action", "")
    if action:
        entries = entries.filter(action=action)
    page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "tab": "audit", "membership": membership, "account": membership.account, "page": page, "action": action,
        "rows": [(entry, _changes(entry)) for entry in page],
        "actions": AuditEntry.objects.filter(account=membership.account).values_list("action", flat=True)
        .distinct().order_by("action"),
    }
    template = "billing/audit_log.html#audit-entries" if request.htmx else "billing/audit_log.html"
    return render(request, template, context)

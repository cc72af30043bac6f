"""Who may see and do what in an account. Every view resolves the account through here, so every
query starts from an account the person holds a seat in."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from billing.models import Account, Seat
from billing.sso.session_scope import AccountSignInRequired, session_may_open

ROLE_RANK: dict[str, int] = {Seat.Role.VIEWER: 0, Seat.Role.MEMBER: 1, Seat.Role.ADMIN: 2, Seat.Role.OWNER: 3}
# What each role adds (CONTRACT-level promise in the web app): viewers see; members create keys and revoke
# the ones they created; admins revoke any key and manage budgets, providers, alerts, prices, API tokens and
# seats and guardrails; owners also plan, billing and branding.
RIGHTS = {
    "view": Seat.Role.VIEWER,
    "manage_keys": Seat.Role.MEMBER,
    "revoke_any_key": Seat.Role.ADMIN,
    "manage_budgets": Seat.Role.ADMIN,
    "manage_providers": Seat.Role.ADMIN,
    "manage_guardrails": Seat.Role.ADMIN,
    "manage_alerts": Seat.Role.ADMIN,
    "manage_prices": Seat.Role.ADMIN,
    "manage_tokens": Seat.Role.ADMIN,
    "manage_seats": Seat.Role.ADMIN,
    "view_audit": Seat.Role.ADMIN,
    "manage_account": Seat.Role.OWNER,
}


@dataclass(frozen=True, slots=True)
class Membership:
    account: Account
    seat: Seat

    @property
    def role(self) -> str:
        return self.seat.role

    def can(self, right: str) -> bool:
        return ROLE_RANK[self.seat.role] >= ROLE_RANK[RIGHTS[right]]

    def require(self, right: str) -> None:
        if not self.can(right):
            raise PermissionDenied(f"Your role ({self.seat.role}) may not do this; ask an account admin.")


def membership_get(request: HttpRequest, slug: str) -> Membership:
    """The caller's seat in the account `slug`, or 404 — an outsider learns nothing, not even that
    the account exists. A seat this session was not opened for (another account's IdP signed the
    person in) asks for a sign-in instead."""
    if not request.user.is_authenticated:
        raise Http404
    seat = Seat.objects.select_related("account__plan").filter(account__slug=slug, user=request.user).first()
    if seat is None:
        raise Http404
    if not session_may_open(request, account_id=seat.account_id):
        raise AccountSignInRequired(seat.account)
    request.tokonomics_account = seat.account  # type: ignore[attr-defined]  # for branding
    return Membership(seat.account, seat)

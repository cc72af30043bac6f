"""The team: seats, the invitations that fill them, and the seats SSO sign-in creates; the write side of
the team page. Each service records its change in the audit log in the same transaction as the change.

Invitations are rows (billing.models): a link carries a random token, the row its SHA-256
hash, and the row's status says whether the link still works, so a link works once and a withdrawn one
not at all. The audit log only records that someone invited, withdrew or accepted.

Seat limit: a pending invitation holds a seat. Inviting counts seats plus pending invitations, so
nobody is invited into an account they cannot join; accepting counts seats only (the invitation's
place was already held), which still refuses it if the plan shrank in the meantime.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing.accounts.access import ROLE_RANK
from billing.models import Account, Invitation, Plan, Seat, SsoConfig
from billing.sso.services import SsoError
from tokonomics.audit import Actor, audit_record, snapshot
from tokonomics.validation import validated_save

logger = logging.getLogger(__name__)


INVITATION_MAX_AGE = timedelta(days=7)
# Links signed before invitations were rows (their rows carry legacy_entry_id); none is valid a week
# after the release that migrated them, and this salt can go then.
LEGACY_INVITATION_SALT = "tokonomics.invitation"
INVITED, ACCEPTED, WITHDRAWN = "seat.invited", "invitation.accepted", "invitation.withdrawn"
EXPIRED = "This invitation has expired (invitations last 7 days). Ask for a new one."


class InvitationError(Exception):
    """An invitation link that cannot be used; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class SentInvitation:
    invitation: Invitation
    url: str
    emailed: bool


def invitation_token_hash(token: str) -> str:
    """What a row stores of its link's token: 256 random bits need no slow KDF."""
    return hashlib.sha256(token.encode()).hexdigest()


def _pending(account: Account) -> QuerySet[Invitation]:
    """Open invitations of the account, whether or not they have expired."""
    return Invitation.objects.filter(account=account, status=Invitation.Status.PENDING)


def _holding_seats(account: Account) -> QuerySet[Invitation]:
    # An invitee who took a seat another way (SSO, a second account's link) holds it through the seat.
    seated = Seat.objects.filter(account=OuterRef("account"), user__email__iexact=OuterRef("email"))
    return _pending(account).filter(expires_at__gt=timezone.now()).exclude(Exists(seated))


def invitation_list_pending(*, account: Account) -> list[Invitation]:
    """Unexpired invitations nobody accepted or withdrew, to people who hold no seat yet, oldest first."""
    return list(_holding_seats(account).select_related("account"))


def _invitation_by_token(token: str) -> Invitation | None:
    rows = Invitation.objects.select_related("account__plan")
    if token.count(":") == 2:  # a signed link from before invitations were rows
        try:
            payload = signing.TimestampSigner(salt=LEGACY_INVITATION_SALT).unsign_object(
                token, max_age=INVITATION_MAX_AGE)
        except signing.SignatureExpired:
            raise InvitationError(EXPIRED) from None
        except signing.BadSignature:
            return None
        return rows.filter(legacy_entry_id=payload.get("i")).first()
    # Found by its hash: how long the index takes tells nothing about a token that would match.
    return rows.filter(token_hash=invitation_token_hash(token), legacy_entry_id__isnull=True).first()


def invitation_get(*, token: str) -> Invitation:
    """The invitation a link names, if it can still be accepted."""
    invitation = _invitation_by_token(token)
    if invitation is None:
        raise InvitationError("This invitation link is not valid. Check that you copied all of it.")
    if invitation.status == Invitation.Status.ACCEPTED:
        raise InvitationError("This invitation has already been used. Sign in to reach the account.")
    if invitation.status == Invitation.Status.REVOKED:
        raise InvitationError("This invitation was withdrawn. Ask an account admin for a new one.")
    if invitation.expires_at <= timezone.now():
        raise InvitationError(EXPIRED)
    return invitation


def _next_plan_for_seats(plan: Plan) -> Plan | None:
    bigger = Q(max_seats__isnull=True) | Q(max_seats__gt=plan.max_seats or 0)
    return Plan.objects.filter(bigger, price_usd_month__gt=plan.price_usd_month).order_by("price_usd_month").first()


def _seats(count: int | None) -> str:
    if count is None:
        return "unlimited seats"
    return f"{count} seat" if count == 1 else f"{count} seats"


def seat_limit_check(*, account: Account, count_pending: bool) -> None:
    """Raise a ValidationError saying why and what to do when one more seat would exceed the plan."""
    plan = account.plan
    if plan.max_seats is None:
        return
    taken = account.seats.count()
    pending = _holding_seats(account).count() if count_pending else 0
    if taken + pending < plan.max_seats:
        return
    held = f" ({taken} taken, {pending} held by pending invitations)" if pending else ""
    upgrade = _next_plan_for_seats(plan)
    remedy = "remove a seat or withdraw an invitation first" if pending else "remove a seat first"
    advice = f"Upgrade to {upgrade.name} for {_seats(upgrade.max_seats)}, or {remedy}." if upgrade else (
        remedy[0].upper() + remedy[1:] + ".")
    raise ValidationError(f"The {plan.name} plan includes {_seats(plan.max_seats)}{held}. {advice}",
                          code="seat_limit")


def assignable_roles(*, actor_seat: Seat) -> list[str]:
    """The roles this person may give: only owners make (or unmake) owners."""
    return [role for role in Seat.Role.values if ROLE_RANK[role] < ROLE_RANK[Seat.Role.OWNER]
            or actor_seat.role == Seat.Role.OWNER]


def _ensure_may_assign(actor_seat: Seat, *roles: str) -> None:
    if actor_seat.role != Seat.Role.OWNER and Seat.Role.OWNER in roles:
        raise PermissionDenied("Only an owner can give, change or remove the owner role.")


def _lock_account(account: Account) -> None:
    # Serialises seat changes of one account, so two concurrent changes cannot both pass the seat
    # limit, or both demote "the other" last owner.
    Account.objects.select_for_update().filter(pk=account.pk).first()


def _ensure_another_owner(seat: Seat) -> None:
    other_owners = seat.account.seats.filter(role=Seat.Role.OWNER).exclude(pk=seat.pk)
    if seat.role == Seat.Role.OWNER and not other_owners.exists():
        raise ValidationError(f"{seat.user.email} is the last owner of {seat.account.name}. "
                              "Make someone else an owner first.", code="last_owner")


def _brand_name(account: Account) -> str:
    return account.brand_name if account.plan.white_label and account.brand_name else "Tokonomics"


def _invitation_email_send(invitation: Invitation, url: str) -> bool:
    context = {"invitation": invitation, "url": url, "brand_name": _brand_name(invitation.account)}
    try:
        # Sent in the inviter's request, after the commit: EMAIL_TIMEOUT bounds how long a silent mail
        # server can hold it. (Not a Celery task: the plaintext link would have to travel through the
        # broker, and the inviter could no longer be told whether the mail went out.)
        send_mail(f"You are invited to {invitation.account.name} on {context['brand_name']}",
                  render_to_string("billing/invitation_email.txt", context), None, [invitation.email])
    except (OSError, smtplib.SMTPException) as error:
        # The inviter sees the link either way; a missing mail server must not lose the invitation.
        logger.warning("invitation email to %s not sent: %s", invitation.email, error)
        return False
    return True


def _revoke(invitation: Invitation, actor: User, now: datetime) -> None:
    invitation.status, invitation.revoked_at = Invitation.Status.REVOKED, now
    invitation.revoked_by = actor if actor.is_authenticated else None
    invitation.save(update_fields=["status", "revoked_at", "revoked_by"])


def seat_invite(*, actor_seat: Seat, email: str, role: str) -> SentInvitation:
    """Invite `email` into the actor's account. A new invitation replaces a pending one to the same address."""
    account, email, actor = actor_seat.account, email.strip().lower(), actor_seat.user
    if role not in Seat.Role.values:
        raise ValidationError({"role": f"{role!r} is not a role."})
    _ensure_may_assign(actor_seat, role)
    if account.seats.filter(user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} already holds a seat in {account.name}."})
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        _lock_account(account)
        now = timezone.now()
        for earlier in _pending(account).filter(email=email):
            if earlier.expires_at > now:  # an expired one was already closed, as far as anyone could see
                audit_record(account=account, actor=actor, action=WITHDRAWN, target=email,
                             before={"role": earlier.role}, after={"invitation": earlier.pk, "replaced": True})
            _revoke(earlier, actor, now)
        seat_limit_check(account=account, count_pending=True)
        invitation = Invitation.objects.create(
            account=account, email=email, role=role, token_hash=invitation_token_hash(token), inviter=actor,
            inviter_label=getattr(actor, "email", "") or str(actor), created_at=now,
            expires_at=now + INVITATION_MAX_AGE)
        audit_record(account=account, actor=actor, action=INVITED, target=email,
                     after={"email": email, "role": role, "invitation": invitation.pk})
    url = settings.SITE_URL + reverse("invitation_accept", args=[token])
    return SentInvitation(invitation, url, emailed=_invitation_email_send(invitation, url))


def invitation_withdraw(*, actor_seat: Seat, invitation_id: int) -> Invitation:
    account = actor_seat.account
    with transaction.atomic():
        invitation = (_pending(account).filter(pk=invitation_id, expires_at__gt=timezone.now())
                      .select_for_update().first())
        if invitation is None:
            raise ValidationError("That invitation is no longer pending.")
        _ensure_may_assign(actor_seat, invitation.role)
        _revoke(invitation, actor_seat.user, timezone.now())
        audit_record(account=account, actor=actor_seat.user, action=WITHDRAWN, target=invitation.email,
                     before={"role": invitation.role}, after={"invitation": invitation.pk})
    return invitation


def invitation_accept(*, token: str, user: User | None, new_password: str | None = None) -> Seat:
    """Give the invited person their seat. With no user, one is created for the invitation's email
    with `new_password` (validated by the caller's form)."""
    account = invitation_get(token=token).account
    with transaction.atomic():
        _lock_account(account)
        # Read again under the lock: of two concurrent acceptances of one link, the second finds it used.
        invitation = invitation_get(token=token)
        if user is None:
            if get_user_model().objects.filter(email__iexact=invitation.email).exists():
                raise InvitationError(f"{invitation.email} already has a user: sign in to accept.")
            user = get_user_model().objects.create_user(username=invitation.email, email=invitation.email,
                                                        password=new_password)
        elif (getattr(user, "email", "") or "").lower() != invitation.email:
            raise InvitationError(f"This invitation is for {invitation.email}, and you are signed in as "
                                  f"{getattr(user, 'email', '') or user}. Sign out, then open the link again.")
        seat = account.seats.filter(user=user).first()
        if seat is None:
            seat_limit_check(account=account, count_pending=False)
            seat = Seat.objects.create(account=account, user=user, role=invitation.role)
        invitation.status, invitation.accepted_at, invitation.accepted_by = (
            Invitation.Status.ACCEPTED, timezone.now(), user)
        invitation.save(update_fields=["status", "accepted_at", "accepted_by"])
        audit_record(account=account, actor=user, action=ACCEPTED, target=invitation.email,
                     after={"invitation": invitation.pk, "role": seat.role})
    return seat


def seat_role_update(*, actor_seat: Seat, seat: Seat, role: str) -> Seat:
    if role not in Seat.Role.values:
        raise ValidationError({"role": f"{role!r} is not a role."})
    _ensure_may_assign(actor_seat, seat.role, role)
    if role == seat.role:
        return seat
    with transaction.atomic():
        _lock_account(seat.account)
        if role != Seat.Role.OWNER:
            _ensure_another_owner(seat)
        before = snapshot(seat, ["role"])
        seat.role = role
        seat.save(update_fields=["role"])
        audit_record(account=seat.account, actor=actor_seat.user, action="seat.role_changed",
                     target=seat.user.email, before=before, after=snapshot(seat, ["role"]))
    return seat


def seat_remove(*, actor_seat: Seat, seat: Seat) -> None:
    _ensure_may_assign(actor_seat, seat.role)
    with transaction.atomic():
        _lock_account(seat.account)
        _ensure_another_owner(seat)
        audit_record(account=seat.account, actor=actor_seat.user, action="seat.removed", target=seat.user.email,
                     before={"email": seat.user.email, "role": seat.role})
        seat.delete()


def sso_user_sign_in(*, config: SsoConfig, claims: dict[str, Any]) -> User:
    """The user the validated ID token names: found, or created just in time with a seat of the
    configuration's default role. An existing user must already hold a seat in this account, so an
    identity provider can never sign someone into an account of theirs it does not serve."""
    email = str(claims.get("email") or "").strip().lower()
    account = config.account
    if not email:
        raise SsoError("The identity provider did not share an email address (it needs the 'email' scope).")
    if claims.get("email_verified") is False:
        raise SsoError(f"The identity provider has not verified {email}.")
    if not config.allows_email(email):
        raise SsoError(f"{email} is not in a verified domain that signs in to {account.name} "
                       f"({', '.join(config.verified_domains()) or 'none yet'}).")
    user = get_user_model().objects.filter(email__iexact=email).first()
    if user is not None:
        if not user.is_active:
            raise SsoError(f"The user {email} is deactivated.")
        if not account.seats.filter(user=user).exists():
            raise SsoError(f"{email} already has a user but no seat in {account.name}. Ask an admin of "
                           f"{account.name} to invite you, then sign in with SSO again.")
        return user
    with transaction.atomic():
        _lock_account(account)
        try:
            seat_limit_check(account=account, count_pending=True)
        except ValidationError as error:
            raise SsoError(" ".join(error.messages)) from None
        user = get_user_model().objects.create_user(username=email, email=email)  # no usable password
        Seat.objects.create(account=account, user=user, role=config.default_role)
        audit_record(account=account, actor=user, action="seat.created_by_sso", target=email,
                     after={"email": email, "role": config.default_role, "issuer": config.issuer})
    return user


def seat_set(*, account: Account, actor: Actor, user: Any, role: str) -> tuple[Seat, bool]:
    """Give `user` a seat with `role` (a config file's seats: no inviting, no role ranking). Returns the seat and
    whether anything changed."""
    seat = Seat.objects.filter(account=account, user=user).first()
    if seat is not None and seat.role == role:
        return seat, False
    with transaction.atomic():
        if seat is None:
            seat = Seat(account=account, user=user, role=role)
            validated_save(seat)
            audit_record(account=account, actor=actor, action="seat.created", target=user.email,
                         after=snapshot(seat, ["role"]))
        else:
            before = snapshot(seat, ["role"])
            seat.role = role
            validated_save(seat)
            audit_record(account=account, actor=actor, action="seat.role_changed", target=user.email,
                         before=before, after=snapshot(seat, ["role"]))
    return seat, True


def seat_delete(*, account: Account, actor: Actor, seat: Seat) -> None:
    """Remove a seat for an operator (no role ranking, as with seat_set), never the account's last owner; logged
    as the team page's removal is."""
    if seat.account_id != account.pk:
        raise ValueError(f"{seat!r} is not in account {account.slug!r}")
    with transaction.atomic():
        _lock_account(account)
        _ensure_another_owner(seat)
        audit_record(account=account, actor=actor, action="seat.removed", target=seat.user.email,
                     before={"email": seat.user.email, "role": seat.role})
        seat.delete()

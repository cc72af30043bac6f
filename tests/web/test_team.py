"""The team page: seats, invitations (rows holding a token hash, 7 days, once), roles, removal, the seat limit."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from billing.models import Account, AuditEntry, Invitation, Seat

pytestmark = pytest.mark.django_db


def _invite(client: Client, email: str, role: str = "member", **headers: str):
    return client.post("/a/acme/team/invite", {"email": email, "role": role}, **headers)


def _link_path(response) -> str:
    match = re.search(r"https?://[^/\s]+(/invitations/[^\s<\"]+/)", response.content.decode())
    assert match, "the invitation link is shown to the inviter"
    return match.group(1)


def test_team_page_lists_seats_with_role_and_since(client_as, alice, bob):
    page = client_as(alice).get("/a/acme/team/").content.decode()
    assert "alice@acme.test" in page and "bob@acme.test" in page
    assert "Since" in page
    assert 'href="/a/acme/team/"' in page  # the Team tab


def test_invitation_is_emailed_shown_once_and_accepted_by_a_new_user(client_as, alice):
    response = _invite(client_as(alice), "erin@acme.test", "admin")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    path = _link_path(response)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["erin@acme.test"]
    assert path in mail.outbox[0].body
    assert path not in client_as(alice).get("/a/acme/team/").content.decode()  # shown once only

    invitee = Client()
    page = invitee.get(path)
    assert page.status_code == 200 and "Choose a password" in page.content.decode()
    joined = invitee.post(path, {"step": "signup", "password1": "a long unusual passphrase 9",
                                 "password2": "a long unusual passphrase 9"})
    assert joined.status_code == 302
    erin = get_user_model().objects.get(email="erin@acme.test")
    assert erin.check_password("a long unusual passphrase 9")
    assert Seat.objects.get(account__slug="acme", user=erin).role == "admin"
    assert invitee.get("/a/acme/team/").status_code == 200  # signed in
    actions = list(AuditEntry.objects.filter(account__slug="acme").values_list("action", "target"))
    assert ("seat.invited", "erin@acme.test") in actions and ("invitation.accepted", "erin@acme.test") in actions


def test_invitation_works_once(client_as, alice):
    path = _link_path(_invite(client_as(alice), "erin@acme.test"))
    Client().post(path, {"step": "signup", "password1": "a long unusual passphrase 9",
                         "password2": "a long unusual passphrase 9"})
    again = Client().get(path)
    assert again.status_code == 400 and "already been used" in again.content.decode()


def test_existing_user_signs_in_to_accept(client_as, alice, charlie):
    path = _link_path(_invite(client_as(alice), "charlie@globex.test", "viewer"))
    invitee = Client()
    assert "Sign in to accept" in invitee.get(path).content.decode()
    wrong = invitee.post(path, {"step": "signin", "password": "nope"})
    assert wrong.status_code == 400 and not Seat.objects.filter(account__slug="acme", user=charlie).exists()
    joined = invitee.post(path, {"step": "signin", "password": "correct horse battery"})
    assert joined.status_code == 302
    assert Seat.objects.get(account__slug="acme", user=charlie).role == "viewer"


def test_signed_in_user_with_another_email_cannot_accept(client_as, alice, charlie):
    path = _link_path(_invite(client_as(alice), "erin@acme.test"))
    other = client_as(charlie)
    assert "this invitation is for erin@acme.test" in other.get(path).content.decode()
    refused = other.post(path, {"step": "accept"})
    assert refused.status_code == 400
    assert not Seat.objects.filter(account__slug="acme", user=charlie).exists()


def test_tampered_and_expired_invitations_are_refused(client_as, alice, monkeypatch):
    path = _link_path(_invite(client_as(alice), "erin@acme.test"))
    tampered = Client().get(path.replace("/invitations/", "/invitations/x"))
    assert tampered.status_code == 400 and "not valid" in tampered.content.decode()
    in_eight_days = timezone.now() + timedelta(days=8)
    monkeypatch.setattr("django.utils.timezone.now", lambda: in_eight_days)
    expired = Client().get(path)
    assert expired.status_code == 400 and "expired" in expired.content.decode()
    assert "erin@acme.test" not in client_as(alice).get("/a/acme/team/").content.decode()  # no longer pending


def test_only_the_token_hash_is_stored(client_as, alice):
    token = _link_path(_invite(client_as(alice), "erin@acme.test")).split("/")[2]
    invitation = Invitation.objects.get()
    assert token not in str(list(Invitation.objects.values_list()))
    assert len(invitation.token_hash) == 64 and invitation.token_hash != token
    assert token not in str(list(AuditEntry.objects.values_list("before", "after")))


def test_withdrawn_invitation_is_refused(client_as, alice):
    owner = client_as(alice)
    path = _link_path(_invite(owner, "erin@acme.test"))
    invitation = Invitation.objects.get(email="erin@acme.test")
    assert owner.post(f"/a/acme/team/invitations/{invitation.pk}/withdraw").status_code == 302
    refused = Client().get(path)
    assert refused.status_code == 400 and "withdrawn" in refused.content.decode()
    assert AuditEntry.objects.filter(action="invitation.withdrawn", target="erin@acme.test").exists()
    invitation.refresh_from_db()
    assert (invitation.status, invitation.revoked_by) == (Invitation.Status.REVOKED, alice)
    assert invitation.revoked_at is not None and invitation.accepted_at is None


def test_inviting_someone_who_has_a_seat_explains(client_as, alice, bob, htmx):
    response = _invite(client_as(alice), "BOB@acme.test", **htmx)
    assert response.status_code == 200  # HTMX re-renders the form partial with its errors
    assert "bob@acme.test already holds a seat" in response.content.decode()
    assert "<html" not in response.content.decode()


def test_invitation_mail_to_a_silent_server_gives_up_after_email_timeout(client_as, alice, silent_smtp):
    started = time.monotonic()
    response = _invite(client_as(alice), "erin@acme.test")
    assert time.monotonic() - started < 5  # EMAIL_TIMEOUT (0.5 s), not the 15 s default nor for ever
    assert response.status_code == 200
    assert "The email could not be sent: send them this link yourself" in response.content.decode()
    assert _link_path(response) and Invitation.objects.get().status == Invitation.Status.PENDING


def test_invalid_invitation_form_without_htmx_is_a_400_page(client_as, alice):
    response = _invite(client_as(alice), "not an email")
    assert response.status_code == 400 and "Enter a valid email address" in response.content.decode()


# --- the seat limit ---


def test_starter_plan_seat_limit_says_why_and_what_to_do(client_as, charlie):
    response = client_as(charlie).post("/a/globex/team/invite", {"email": "x@globex.test", "role": "member"})
    assert response.status_code == 400
    assert "The Starter plan includes 1 seat. Upgrade to Pro for 5 seats, or remove a seat first." in (
        response.content.decode())
    assert not mail.outbox


def test_pending_invitations_hold_seats(client_as, alice, bob):
    owner = client_as(alice)
    for name in ("x", "y", "z"):
        assert _invite(owner, f"{name}@acme.test").status_code == 200
    refused = _invite(owner, "w@acme.test")
    assert refused.status_code == 400
    assert ("The Pro plan includes 5 seats (2 taken, 3 held by pending invitations). Upgrade to Enterprise for "
            "unlimited seats, or remove a seat or withdraw an invitation first.") in refused.content.decode()
    # Re-inviting the same address replaces its invitation rather than holding a second seat.
    assert _invite(owner, "x@acme.test", "viewer").status_code == 200


def test_reinviting_replaces_the_earlier_link(client_as, alice):
    owner = client_as(alice)
    first = _link_path(_invite(owner, "erin@acme.test", "viewer"))
    second = _link_path(_invite(owner, "ERIN@acme.test", "admin"))
    assert Client().get(first).status_code == 400 and "withdrawn" in Client().get(first).content.decode()
    assert "as admin" in Client().get(second).content.decode()
    assert list(Invitation.objects.values_list("email", "role", "status")) == [
        ("erin@acme.test", "viewer", "revoked"), ("erin@acme.test", "admin", "pending")]
    replaced = AuditEntry.objects.get(action="invitation.withdrawn")
    assert (replaced.before["role"], replaced.after["invitation"], replaced.after["replaced"]) == (
        "viewer", Invitation.objects.first().pk, True)


def test_an_invitation_is_withdrawn_only_from_its_own_account(client_as, alice, charlie):
    _invite(client_as(alice), "erin@acme.test")
    invitation = Invitation.objects.get()
    response = client_as(charlie).post(f"/a/globex/team/invitations/{invitation.pk}/withdraw")
    assert response.status_code == 302
    assert Invitation.objects.get().status == Invitation.Status.PENDING
    assert not AuditEntry.objects.filter(action="invitation.withdrawn").exists()


def test_accepting_marks_the_row_and_the_log_only_records_it(client_as, alice, charlie):
    path = _link_path(_invite(client_as(alice), "charlie@globex.test", "viewer"))
    assert client_as(charlie).post(path, {"step": "accept"}).status_code == 302
    invitation = Invitation.objects.get()
    assert (invitation.status, invitation.accepted_by, invitation.inviter) == ("accepted", charlie, alice)
    assert "Pending invitations" not in client_as(alice).get("/a/acme/team/").content.decode()
    # The log is not state: emptying it changes nothing about the invitation.
    AuditEntry.objects.all().delete()
    again = Client().get(path)
    assert again.status_code == 400 and "already been used" in again.content.decode()


def test_acceptance_is_refused_when_the_plan_shrank(client_as, alice, plans):
    path = _link_path(_invite(client_as(alice), "erin@acme.test"))
    Account.objects.filter(slug="acme").update(plan=plans["starter"])
    refused = Client().post(path, {"step": "signup", "password1": "a long unusual passphrase 9",
                                   "password2": "a long unusual passphrase 9"})
    assert refused.status_code == 400 and "The Starter plan includes 1 seat" in refused.content.decode()
    assert not get_user_model().objects.filter(email="erin@acme.test").exists()


# --- roles and owners ---


def test_role_change_is_audited(client_as, alice, bob, htmx):
    seat = Seat.objects.get(user=bob)
    response = client_as(alice).post(f"/a/acme/team/seats/{seat.pk}", {"role": "admin"}, **htmx)
    assert response.status_code == 200 and "bob@acme.test is now admin" in response.content.decode()
    seat.refresh_from_db()
    assert seat.role == "admin"
    entry = AuditEntry.objects.get(action="seat.role_changed")
    assert (entry.actor, entry.target, entry.before, entry.after) == (
        alice, "bob@acme.test", {"role": "member"}, {"role": "admin"})


def test_last_owner_cannot_be_demoted_or_removed(client_as, alice):
    owner = client_as(alice)
    seat = Seat.objects.get(user=alice)
    demoted = owner.post(f"/a/acme/team/seats/{seat.pk}", {"role": "admin"}, follow=True)
    assert "alice@acme.test is the last owner of Acme Inc. Make someone else an owner first." in (
        demoted.content.decode())
    removed = owner.post(f"/a/acme/team/seats/{seat.pk}/remove", follow=True)
    assert "is the last owner" in removed.content.decode()
    seat.refresh_from_db()
    assert seat.role == "owner"
    assert not AuditEntry.objects.exists()


def test_an_owner_can_step_down_once_another_owner_exists(client_as, alice, bob):
    owner = client_as(alice)
    owner.post(f"/a/acme/team/seats/{Seat.objects.get(user=bob).pk}", {"role": "owner"})
    response = owner.post(f"/a/acme/team/seats/{Seat.objects.get(user=alice).pk}", {"role": "member"})
    assert response.status_code == 302
    assert Seat.objects.get(user=alice).role == "member"


def test_removing_a_seat_is_audited_and_the_person_loses_access(client_as, alice, bob):
    seat = Seat.objects.get(user=bob)
    assert client_as(alice).post(f"/a/acme/team/seats/{seat.pk}/remove").status_code == 302
    assert not Seat.objects.filter(pk=seat.pk).exists()
    assert client_as(bob).get("/a/acme/team/").status_code == 404
    entry = AuditEntry.objects.get(action="seat.removed")
    assert entry.before == {"email": "bob@acme.test", "role": "member"}


def test_admins_cannot_make_or_unmake_owners(client_as, alice, bob, carol):
    admin = client_as(carol)
    assert admin.post(f"/a/acme/team/seats/{Seat.objects.get(user=bob).pk}", {"role": "owner"}).status_code == 403
    assert admin.post(f"/a/acme/team/seats/{Seat.objects.get(user=alice).pk}", {"role": "viewer"}).status_code == 403
    assert admin.post(f"/a/acme/team/seats/{Seat.objects.get(user=alice).pk}/remove").status_code == 403
    assert _invite(admin, "x@acme.test", "owner").status_code == 400  # not a choice offered to admins
    assert Seat.objects.get(user=alice).role == "owner" and Seat.objects.get(user=bob).role == "member"


# --- who may do what ---

ROLE_MATRIX = [
    # (role, may view the team page, may manage seats)
    ("viewer", True, False),
    ("member", True, False),
    ("admin", True, True),
    ("owner", True, True),
]


@pytest.mark.parametrize(("role", "may_view", "may_manage"), ROLE_MATRIX)
def test_role_matrix_for_team_actions(client_as, acme, alice, role, may_view, may_manage):
    from ..support import user_with_seat

    actor = alice if role == "owner" else user_with_seat(f"{role}@acme.test", acme, role)
    target = user_with_seat("target@acme.test", acme, "viewer")
    target_seat = Seat.objects.get(user=target)
    client = client_as(actor)
    assert client.get("/a/acme/team/").status_code == (200 if may_view else 403)
    expected = 200 if may_manage else 403
    assert _invite(client, "new@acme.test", "viewer").status_code == expected
    invitation = Invitation.objects.filter(email="new@acme.test").first()
    if invitation is None:
        invitation = Invitation.objects.create(account=acme, email="new@acme.test", role="viewer", token_hash="0" * 64,
                                               inviter_label="x", expires_at=timezone.now() + timedelta(days=1))
    withdraw = client.post(f"/a/acme/team/invitations/{invitation.pk}/withdraw")
    assert withdraw.status_code == (302 if may_manage else 403)
    update = client.post(f"/a/acme/team/seats/{target_seat.pk}", {"role": "member"})
    assert update.status_code == (302 if may_manage else 403)
    remove = client.post(f"/a/acme/team/seats/{target_seat.pk}/remove")
    assert remove.status_code == (302 if may_manage else 403)
    assert Seat.objects.filter(pk=target_seat.pk).exists() is not may_manage


def test_outsider_gets_404_on_every_team_view(client_as, alice, bob, charlie):
    outsider = client_as(charlie)
    seat = Seat.objects.get(user=bob)
    assert outsider.get("/a/acme/team/").status_code == 404
    assert _invite(outsider, "x@acme.test").status_code == 404
    assert outsider.post(f"/a/acme/team/seats/{seat.pk}", {"role": "admin"}).status_code == 404
    assert outsider.post(f"/a/acme/team/seats/{seat.pk}/remove").status_code == 404
    assert outsider.post("/a/acme/team/invitations/1/withdraw").status_code == 404
    # Nor can charlie reach acme's seats through his own account.
    assert outsider.post(f"/a/globex/team/seats/{seat.pk}", {"role": "admin"}).status_code == 404
    assert outsider.post(f"/a/globex/team/seats/{seat.pk}/remove").status_code == 404
    assert Seat.objects.get(pk=seat.pk).role == "member"


def test_anonymous_visitors_are_sent_to_sign_in(acme):
    response = Client().get("/a/acme/team/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")

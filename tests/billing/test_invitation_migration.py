"""The migration that turns the invitations the audit log held open into Invitation rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from billing.models import Invitation, Seat

from ..migration_steps import loader, migrate_to, migrate_to_latest, migration_ending

PASSWORD = "a long unusual passphrase 9"


def _before_invitation_rows():
    target = migration_ending("billing", "_i14_invitations")
    before = [dep for dep in loader().get_migration(*target).dependencies if dep[0] == "billing"]
    return target, migrate_to(before)


@pytest.mark.django_db(transaction=True)
def test_open_invitations_of_the_log_become_pending_rows(plans):
    target, old = _before_invitation_rows()
    User = old.get_model("auth", "User")
    Entry = old.get_model("billing", "AuditEntry")
    alice = User.objects.create(username="alice@acme.test", email="alice@acme.test")
    bob = User.objects.create(username="bob@acme.test", email="Bob@acme.test")
    acme = old.get_model("billing", "Account").objects.create(slug="acme", name="Acme Inc",
                                                              plan_id=plans["pro"].pk, timezone="UTC")
    old.get_model("billing", "Seat").objects.create(account=acme, user=bob, role="member")

    def invited(email: str, role: str = "member", days_ago: float = 1):
        entry = Entry.objects.create(account=acme, actor=alice, actor_label="alice@acme.test", action="seat.invited",
                                     target=email, after={"email": email, "role": role})
        Entry.objects.filter(pk=entry.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
        return entry

    def closed(action: str, entry, **after):
        Entry.objects.create(account=acme, actor_label="x", action=action, target=entry.target,
                             after={"invitation": entry.pk, **after})

    pending = invited("erin@acme.test", "admin", days_ago=2)
    closed("invitation.accepted", invited("accepted@acme.test"))
    closed("invitation.withdrawn", invited("withdrawn@acme.test"))
    invited("expired@acme.test", days_ago=8)
    invited("bob@acme.test")  # who took a seat meanwhile (through SSO, say)
    replaced = invited("frank@acme.test", "viewer", days_ago=3)
    closed("invitation.withdrawn", replaced, replaced=True)
    again = invited("frank@acme.test", "member", days_ago=2)
    log = list(Entry.objects.order_by("pk").values_list("pk", "action", "after"))
    try:
        new = migrate_to([target])
        rows = new.get_model("billing", "Invitation").objects.order_by("email")
        assert [(r.email, r.role, r.status, r.legacy_entry_id, r.inviter_id, r.inviter_label) for r in rows] == [
            ("erin@acme.test", "admin", "pending", pending.pk, alice.pk, "alice@acme.test"),
            ("frank@acme.test", "member", "pending", again.pk, alice.pk, "alice@acme.test"),
        ]
        erin = rows[0]
        created = Entry.objects.get(pk=pending.pk).created_at
        assert (erin.created_at, erin.expires_at) == (created, created + timedelta(days=7))
        assert len(erin.token_hash) == 64
        assert list(Entry.objects.order_by("pk").values_list("pk", "action", "after")) == log  # left as it was
    finally:
        migrate_to_latest()


@pytest.mark.django_db(transaction=True)
def test_a_link_mailed_before_the_migration_still_works_once(plans):
    target, old = _before_invitation_rows()
    User = old.get_model("auth", "User")
    alice = User.objects.create(username="alice@acme.test", email="alice@acme.test")
    acme = old.get_model("billing", "Account").objects.create(slug="acme", name="Acme Inc",
                                                              plan_id=plans["pro"].pk, timezone="UTC")
    old.get_model("billing", "Seat").objects.create(account=acme, user=alice, role="owner")
    entry = old.get_model("billing", "AuditEntry").objects.create(
        account=acme, actor=alice, actor_label="alice@acme.test", action="seat.invited", target="erin@acme.test",
        after={"email": "erin@acme.test", "role": "viewer"})
    # What the old code put in the link: the audit entry's id, signed.
    token = signing.TimestampSigner(salt="tokonomics.invitation").sign_object({"i": entry.pk})
    forged = signing.TimestampSigner(salt="tokonomics.invitation").sign_object({"i": entry.pk + 1})
    try:
        migrate_to([target])
        migrate_to_latest()
        path = f"/invitations/{token}/"
        assert "Join Acme Inc" in Client().get(path).content.decode()
        joined = Client().post(path, {"step": "signup", "password1": PASSWORD, "password2": PASSWORD})
        assert joined.status_code == 302
        assert Seat.objects.get(user__email="erin@acme.test").role == "viewer"
        assert Invitation.objects.get().status == Invitation.Status.ACCEPTED
        again = Client().get(path)
        assert again.status_code == 400 and "already been used" in again.content.decode()
        assert Client().get(f"/invitations/{forged}/").status_code == 400
        tampered = Client().get(f"/invitations/{token[:-2]}xx/")
        assert tampered.status_code == 400 and "not valid" in tampered.content.decode()
    finally:
        migrate_to_latest()

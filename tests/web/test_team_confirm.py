"""Removing a seat and withdrawing an invitation confirm first without JavaScript too: the buttons' forms GET
a confirm page (HTMX asks with hx-confirm and posts instead)."""

from __future__ import annotations

import pytest

from billing.models import Invitation, Seat

pytestmark = pytest.mark.django_db


def test_seat_removal_asks_on_a_page_of_its_own_without_javascript(client_as, alice, bob, acme) -> None:
    owner = client_as(alice)
    seat = Seat.objects.get(user=bob)
    url = f"/a/acme/team/seats/{seat.pk}/remove"
    team = owner.get("/a/acme/team/").content.decode()
    form = team.split(f'action="{url}"')[0].rsplit("<form", 1)[1] + team.split(f'action="{url}"')[1].split(">")[0]
    assert 'method="get"' in form and "hx-post" in form and "hx-confirm" in form
    confirm = owner.get(url).content.decode()
    assert "Remove the seat of bob@acme.test?" in confirm
    assert f'action="{url}"' in confirm and 'method="post"' in confirm
    assert Seat.objects.filter(pk=seat.pk).exists()
    assert owner.post(url).status_code == 302
    assert not Seat.objects.filter(pk=seat.pk).exists()


def test_invitation_withdrawal_asks_on_a_page_of_its_own(client_as, alice, acme) -> None:
    owner = client_as(alice)
    owner.post("/a/acme/team/invite", {"email": "erin@acme.test", "role": "member"})
    invitation = Invitation.objects.get(email="erin@acme.test")
    url = f"/a/acme/team/invitations/{invitation.pk}/withdraw"
    assert "Withdraw the invitation to erin@acme.test?" in owner.get(url).content.decode()
    invitation.refresh_from_db()
    assert invitation.revoked_at is None
    assert owner.post(url).status_code == 302


def test_viewers_and_members_get_no_confirm_page(client_as, alice, bob, dave, acme) -> None:
    seat = Seat.objects.get(user=alice)
    for user in (bob, dave):
        assert client_as(user).get(f"/a/acme/team/seats/{seat.pk}/remove").status_code == 403

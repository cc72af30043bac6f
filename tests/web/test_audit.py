"""The audit log page: who, what, before → after, when; paginated; admins and owners only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.accounts.audit import audit_record
from billing.models import AuditEntry, Seat

pytestmark = pytest.mark.django_db


def test_changes_made_in_the_web_app_appear_with_who_what_and_before_after(client_as, alice, bob):
    owner = client_as(alice)
    owner.post(f"/a/acme/team/seats/{Seat.objects.get(user=bob).pk}", {"role": "viewer"})
    owner.post("/a/acme/settings/general", {"name": "Acme Corp", "timezone": "UTC",
                                            "on_redis_unavailable": "default"})
    # A change made through another part of the app, which records through the same helper.
    owner.post(reverse("budget_create", args=["acme"]), {"scope": "account", "period": "month",
                                                         "limit_usd": "500", "alert_at": "50, 100", "hard": "on"})
    page = owner.get("/a/acme/audit/").content.decode()
    for text in ("alice@acme.test", "seat.role_changed", "bob@acme.test", "member → viewer",
                 "account.updated", "Acme Inc → Acme Corp", "budget.created"):
        assert text in page, text


def test_pages_hold_fifty_entries_newest_first(client_as, alice, acme, htmx):
    for i in range(60):
        audit_record(account=acme, actor=alice, action="budget.updated", target=f"budget {i:02d}",
                     before={"limit_usd": str(i)}, after={"limit_usd": str(i + 1)})
    owner = client_as(alice)
    first = owner.get("/a/acme/audit/").content.decode()
    assert "budget 59" in first and "budget 10" in first and "budget 09" not in first
    assert "Page 1 of 2" in first
    second = owner.get("/a/acme/audit/?page=2", **htmx).content.decode()
    assert second.lstrip().startswith('<div id="audit-entries"')
    assert "budget 09" in second and "budget 00" in second and "budget 10" not in second


def test_entries_can_be_narrowed_to_one_action(client_as, alice, acme):
    audit_record(account=acme, actor=alice, action="key.created", target="ci")
    audit_record(account=acme, actor=alice, action="budget.created", target="monthly cap")
    page = client_as(alice).get("/a/acme/audit/?action=key.created").content.decode()
    assert "<td>ci</td>" in page and "monthly cap</td>" not in page


def test_only_this_accounts_entries_are_listed(client_as, alice, charlie, globex):
    audit_record(account=globex, actor=charlie, action="key.created", target="globex-secret-key")
    assert "globex-secret-key" not in client_as(alice).get("/a/acme/audit/").content.decode()


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("member", 403), ("admin", 200), ("owner", 200)])
def test_role_matrix_for_the_audit_log(client_as, acme, alice, role, status):
    from ..conftest import _user_with_seat

    user = alice if role == "owner" else _user_with_seat(f"{role}@acme.test", acme, role)
    page = client_as(user).get("/a/acme/audit/")
    assert page.status_code == status
    # The tab is offered to those who may open it.
    team = client_as(user).get("/a/acme/team/").content.decode()
    assert ('href="/a/acme/audit/"' in team) is (status == 200)


def test_outsider_gets_404(client_as, alice, charlie):
    assert client_as(charlie).get("/a/acme/audit/").status_code == 404
    assert not AuditEntry.objects.exists()

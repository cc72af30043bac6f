"""Budgets in the web app: an Edit button that opens the filled form, delete after a confirm page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import AuditEntry, Budget

pytestmark = pytest.mark.django_db


@pytest.fixture
def budget(acme) -> Budget:
    return Budget.objects.create(account=acme, scope="tenant", match="initech", period="month",
                                 limit_usd=Decimal("25"), alert_at=[50, 100])


def test_edit_button_opens_the_filled_form_and_saving_redirects(client_as, carol, budget) -> None:
    client = client_as(carol)
    edit_url = reverse("budget_update", args=["acme", budget.pk])
    assert edit_url in client.get(reverse("budget_list", args=["acme"])).content.decode()
    form = client.get(edit_url).content.decode()
    assert f'action="{edit_url}"' in form and 'value="initech"' in form and 'value="50, 100"' in form
    saved = client.post(edit_url, {"scope": "tenant", "match": "initech", "period": "day", "limit_usd": "30",
                                   "alert_at": "80"})
    assert saved.status_code == 302
    budget.refresh_from_db()
    assert budget.period == "day" and budget.limit_usd == Decimal("30") and budget.alert_at == [80]
    assert AuditEntry.objects.filter(action="budget.updated", actor=carol).exists()
    assert Budget.objects.count() == 1


def test_get_on_the_new_budget_address_is_the_budgets_page_not_a_405(client_as, carol) -> None:
    response = client_as(carol).get(reverse("budget_create", args=["acme"]))
    assert response.status_code == 302 and response["Location"] == reverse("budget_list", args=["acme"])


def test_delete_asks_on_a_page_of_its_own_then_deletes(client_as, carol, budget) -> None:
    client = client_as(carol)
    url = reverse("budget_delete", args=["acme", budget.pk])
    confirm = client.get(url)
    assert confirm.status_code == 200 and f'action="{url}"' in confirm.content.decode()
    assert Budget.objects.filter(pk=budget.pk).exists()
    assert client.post(url).status_code == 302
    assert not Budget.objects.filter(pk=budget.pk).exists()
    assert AuditEntry.objects.filter(action="budget.deleted", actor=carol).exists()


@pytest.mark.parametrize("persona", ["dave", "bob"])  # a viewer, a member
def test_only_admins_edit_or_delete_budgets(client_as, persona, budget, request) -> None:
    client = client_as(request.getfixturevalue(persona))
    page = client.get(reverse("budget_list", args=["acme"])).content.decode()
    assert reverse("budget_update", args=["acme", budget.pk]) not in page
    for name in ("budget_update", "budget_delete"):
        assert client.get(reverse(name, args=["acme", budget.pk])).status_code == 403
    assert client.post(reverse("budget_update", args=["acme", budget.pk]),
                       {"scope": "account", "period": "month", "limit_usd": "1"}).status_code == 403
    assert client.post(reverse("budget_delete", args=["acme", budget.pk])).status_code == 403
    budget.refresh_from_db()
    assert budget.limit_usd == Decimal("25")

"""Routes in the web app: listed, added, edited and deleted through the audited services by admins; members
see them but may not change them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.models import AuditEntry
from proxy.models import ProviderEndpoint, Route

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoints(acme) -> None:
    for slug, wire in (("openai", "openai"), ("anthropic", "anthropic")):
        ProviderEndpoint.objects.create(account=acme, slug=slug, wire_format=wire, base_url="https://llm.example.com")


def test_a_route_is_added_edited_and_deleted(client_as, alice, acme, endpoints) -> None:
    client = client_as(alice)
    page = client.get(reverse("route_list", args=["acme"]))
    assert page.status_code == 200 and "No routes" in page.content.decode()
    added = client.post(reverse("route_new", args=["acme"]), {
        "name": "support-default", "strategy": "fallback", "targets": "openai/gpt-4o timeout=10\nopenai/gpt-4o-mini",
        "max_attempts": 3, "deadline_seconds": 30, "retries": 1, "backoff_ms": 200})
    assert added.status_code == 302, added.content.decode()
    route = Route.objects.get(account=acme, name="support-default")
    assert route.targets == [{"endpoint": "openai", "model": "gpt-4o", "weight": 1, "timeout_seconds": 10.0},
                             {"endpoint": "openai", "model": "gpt-4o-mini", "weight": 1, "timeout_seconds": None}]
    listed = client.get(reverse("route_list", args=["acme"])).content.decode()
    assert "openai/gpt-4o timeout=10" in listed
    edit = reverse("route_edit", args=["acme", route.pk])
    assert "openai/gpt-4o-mini" in client.get(edit).content.decode()
    saved = client.post(edit, {"name": "support-default", "strategy": "weighted",
                               "targets": "openai/gpt-4o weight=3\nopenai/gpt-4o-mini weight=1", "max_attempts": 2,
                               "deadline_seconds": 30, "retries": 0, "backoff_ms": 100})
    assert saved.status_code == 302
    route.refresh_from_db()
    assert route.strategy == "weighted" and [t["weight"] for t in route.targets] == [3, 1]
    delete = reverse("route_delete", args=["acme", route.pk])
    assert "Delete route support-default?" in client.get(delete).content.decode()
    assert client.post(delete).status_code == 302
    assert not Route.objects.exists()
    actions = set(AuditEntry.objects.filter(actor=alice).values_list("action", flat=True))
    assert {"route.created", "route.updated", "route.deleted"} <= actions


def test_a_target_of_an_unknown_endpoint_or_malformed_line_is_refused(client_as, alice, acme, endpoints) -> None:
    client = client_as(alice)
    for targets, message in (("mistral/mistral-small", "no provider endpoint"), ("gpt-4o", "endpoint/model"),
                             ("openai/gpt-4o speed=9", "weight=N")):
        response = client.post(reverse("route_new", args=["acme"]), {
            "name": "x", "strategy": "fallback", "targets": targets, "max_attempts": 3, "deadline_seconds": 30,
            "retries": 1, "backoff_ms": 200})
        assert response.status_code == 400 and message in response.content.decode(), targets
    assert not Route.objects.exists()


def test_members_see_routes_but_cannot_change_them(client_as, bob, acme, endpoints) -> None:
    route = Route.objects.create(account=acme, name="cheap", targets=[{"endpoint": "openai", "model": "gpt-4o-mini"}])
    client = client_as(bob)
    page = client.get(reverse("route_list", args=["acme"])).content.decode()
    assert "cheap" in page and reverse("route_edit", args=["acme", route.pk]) not in page
    assert client.post(reverse("route_delete", args=["acme", route.pk])).status_code == 403
    assert Route.objects.filter(pk=route.pk).exists()


def test_a_budget_is_given_a_downgrade_on_its_form(client_as, alice, acme) -> None:
    from billing.models import Budget

    client = client_as(alice)
    form = client.get(reverse("budget_list", args=["acme"])).content.decode()
    assert 'name="on_exceed"' in form and 'name="downgrade_to"' in form
    posted = client.post(reverse("budget_create", args=["acme"]), {
        "scope": "account", "period": "month", "limit_usd": "100", "hard": "on", "alert_at": "50",
        "on_exceed": "downgrade", "downgrade_to": "gpt-4o-mini", "downgrade_at": "80"})
    assert posted.status_code == 302, posted.content.decode()[:2000]
    budget = Budget.objects.get(account=acme)
    assert (budget.on_exceed, budget.downgrade_to, budget.downgrade_at) == ("downgrade", "gpt-4o-mini", 80)
    refused = client.post(reverse("budget_create", args=["acme"]), {
        "scope": "tenant", "match": "*", "period": "month", "limit_usd": "100", "hard": "on",
        "on_exceed": "downgrade", "downgrade_to": "", "downgrade_at": "80"})
    assert refused.status_code == 400 and "needs the route or model" in refused.content.decode()


def test_the_dashboard_and_the_call_page_show_what_routing_did(client_as, alice, acme) -> None:
    from decimal import Decimal

    from django.utils import timezone

    from billing.usage.rollups import usage_rollup_add

    from ..support import usage_record_create

    record = usage_record_create(
        account=acme, request_id="req_routed_1", provider="openai", model="gpt-4o-mini", status_code=200,
        created_at=timezone.now(), cost_usd=Decimal("0.0001"), route="", requested_model="gpt-4o",
        downgraded_from="gpt-4o", routing_saved_usd=Decimal("1.25"),
        attempts=[{"target": "openai/gpt-4o-mini", "outcome": "ok", "ms": 12}])
    usage_rollup_add(records=[record])
    client = client_as(alice)
    dashboard = client.get(reverse("dashboard", args=["acme"])).content.decode()
    saved = dashboard.split('data-testid="routing-saved"')[1].split("</div>")[0]
    assert "routing saved $1.25" in saved and "1 call downgraded by a budget" in saved
    detail = client.get(reverse("call_detail", args=["acme", record.pk])).content.decode()
    assert "downgraded</span> from gpt-4o" in detail and "openai/gpt-4o-mini</code>: ok (12 ms)" in detail
    assert "gpt-4o → openai / gpt-4o-mini" in client.get(reverse("call_list", args=["acme"])).content.decode()


def test_a_route_sets_its_own_response_cache_ttl_and_temperature_rule(client_as, alice, acme, endpoints) -> None:
    client = client_as(alice)
    form = {"name": "faq", "strategy": "fallback", "targets": "openai/gpt-4o-mini", "max_attempts": 3,
            "deadline_seconds": 30, "retries": 1, "backoff_ms": 200}
    assert client.post(reverse("route_new", args=["acme"]), form).status_code == 302
    route = Route.objects.get(name="faq")
    assert (route.cache_ttl_seconds, route.cache_nonzero_temperature) == (None, None)  # the account's
    edit = reverse("route_edit", args=["acme", route.pk])
    page = client.get(edit).content.decode()
    assert "Response cache TTL" in page and '<option value="unknown" selected>As the account says</option>' in page
    saved = client.post(edit, {**form, "cache_ttl_seconds": 86400, "cache_nonzero_temperature": "true"})
    assert saved.status_code == 302
    route.refresh_from_db()
    assert (route.cache_ttl_seconds, route.cache_nonzero_temperature) == (86400, True)
    assert '<option value="true" selected>Yes</option>' in client.get(edit).content.decode()
    too_long = client.post(edit, {**form, "cache_ttl_seconds": 10**7})
    assert too_long.status_code == 400

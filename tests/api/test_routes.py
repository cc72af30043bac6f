"""The routes API: create, read, change and delete an account's routes, audited, validated against the
account's own endpoints, and seen by the proxy's directory."""

from __future__ import annotations

import pytest

from billing.accounts.directory import load_account
from proxy.models import ProviderEndpoint, Route

from ..support import ApiClient

pytestmark = pytest.mark.django_db

TARGETS = [{"endpoint": "openai", "model": "gpt-4o-mini"}]


def test_a_route_is_created_read_changed_and_deleted(acme, acme_endpoint, acme_api: ApiClient) -> None:
    response = acme_api.post("routes", {"name": "support-default", "strategy": "fallback", "targets": [
        {"endpoint": "openai", "model": "gpt-4o", "timeout_seconds": 5}, *TARGETS]})
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["name"] == "support-default" and created["targets"][0]["timeout_seconds"] == 5
    assert acme_api.get(f"routes/{created['id']}").json()["targets"][1] == {
        "endpoint": "openai", "model": "gpt-4o-mini", "weight": 1, "timeout_seconds": None}
    entry = load_account(acme.pk)
    assert entry is not None
    route = entry.routes["support-default"]
    assert [t.label for t in route.targets] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    assert route.targets[0].timeout_seconds == 5 and route.max_attempts == 3
    changed = acme_api.patch(f"routes/{created['id']}", {"strategy": "lowest-cost", "retries": 0}).json()
    assert (changed["strategy"], changed["retries"]) == ("lowest-cost", 0)
    assert acme_api.delete(f"routes/{created['id']}").status_code == 204
    assert not Route.objects.filter(account=acme).exists()
    actions = list(acme.audit_entries.order_by("pk").values_list("action", flat=True))
    assert actions[-3:] == ["route.created", "route.updated", "route.deleted"]


def test_a_target_must_name_an_endpoint_of_the_account(acme, acme_endpoint, globex, acme_api: ApiClient) -> None:
    ProviderEndpoint.objects.create(account=globex, slug="anthropic", wire_format="anthropic",
                                    base_url="https://api.anthropic.com")
    response = acme_api.post("routes", {"name": "x", "targets": [
        {"endpoint": "anthropic", "model": "claude-3-5-haiku-latest"}]})
    assert response.status_code in (400, 422), response.content
    assert "anthropic" in response.content.decode()
    assert not Route.objects.exists()


def test_route_names_are_unique_per_account(acme, acme_endpoint, acme_api: ApiClient) -> None:
    assert acme_api.post("routes", {"name": "cheap", "targets": TARGETS}).status_code == 201
    assert acme_api.post("routes", {"name": "cheap", "targets": TARGETS}).status_code in (400, 409, 422)


def test_a_route_sets_its_own_response_cache_ttl_and_temperature_rule(acme, acme_endpoint,
                                                                       acme_api: ApiClient) -> None:
    created = acme_api.post("routes", {"name": "faq", "targets": TARGETS, "cache_ttl_seconds": 86400}).json()
    assert (created["cache_ttl_seconds"], created["cache_nonzero_temperature"]) == (86400, None)
    changed = acme_api.patch(f"routes/{created['id']}", {"cache_nonzero_temperature": True}).json()
    assert (changed["cache_ttl_seconds"], changed["cache_nonzero_temperature"]) == (86400, True)
    entry = load_account(acme.pk)
    assert entry is not None
    assert (entry.routes["faq"].cache_ttl_seconds, entry.routes["faq"].cache_nonzero_temperature) == (86400, True)
    back = acme_api.patch(f"routes/{created['id']}", {"cache_ttl_seconds": None}).json()  # the account's again
    assert back["cache_ttl_seconds"] is None
    assert acme_api.patch(f"routes/{created['id']}", {"cache_ttl_seconds": 0}).status_code == 422


def test_a_budget_takes_a_downgrade_over_the_api(acme, acme_api: ApiClient) -> None:
    created = acme_api.post("budgets", {"scope": "account", "period": "month", "limit_usd": "100",
                                        "on_exceed": "downgrade", "downgrade_to": "gpt-4o-mini", "downgrade_at": 80})
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["on_exceed"], body["downgrade_to"], body["downgrade_at"]) == ("downgrade", "gpt-4o-mini", 80)
    entry = load_account(acme.pk)
    assert entry is not None and entry.budgets[0].downgrade_to == "gpt-4o-mini"
    assert entry.budgets[0].downgrade_at_nanos == entry.budgets[0].limit_nanos * 80 // 100
    refused = acme_api.patch(f"budgets/{body['id']}", {"downgrade_to": ""})
    assert refused.status_code in (400, 422)

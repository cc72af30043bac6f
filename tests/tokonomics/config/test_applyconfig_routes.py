"""applyconfig's `routes:` (docs/CONTRACT.md "Routes and cache"): created, idempotent, updated, and a target
naming a provider the account lacks refused with the file's location."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from billing.models import Account
from proxy.models import Route

from .test_applyconfig import ENV, apply_data, example, rejected

pytestmark = pytest.mark.django_db


@pytest.fixture
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

ROUTES = [{
    "name": "support-default", "strategy": "fallback", "deadline_seconds": 20,
    "targets": [{"provider": "openai", "model": "gpt-4o", "timeout_seconds": 10},
                {"provider": "openai", "model": "gpt-4o-mini"}],
}]


def with_routes(routes: list[dict]) -> dict:
    data = example()
    data["accounts"][0]["routes"] = routes
    return data


def test_routes_are_applied_once_and_updated(tmp_path, env) -> None:
    output = apply_data(tmp_path, with_routes(ROUTES))
    assert "acme: created route support-default" in output
    route = Route.objects.get(account=Account.objects.get(slug="acme"), name="support-default")
    assert route.targets == [{"endpoint": "openai", "model": "gpt-4o", "weight": 1, "timeout_seconds": 10.0},
                             {"endpoint": "openai", "model": "gpt-4o-mini", "weight": 1, "timeout_seconds": None}]
    assert route.deadline_seconds == 20 and route.max_attempts == 3
    assert apply_data(tmp_path, with_routes(ROUTES)).strip() == "No changes."
    changed = [{**ROUTES[0], "strategy": "lowest-cost"}]
    assert "acme: updated strategy route support-default" in apply_data(tmp_path, with_routes(changed))
    assert Route.objects.get(name="support-default").strategy == "lowest-cost"


def test_a_target_naming_an_unknown_provider_is_rejected(tmp_path, env) -> None:
    bad = [{"name": "x", "targets": [{"provider": "mistral", "model": "mistral-small"}]}]
    message = rejected(tmp_path, with_routes(bad))
    assert "routes[0] (x).targets[0].provider: no provider 'mistral'" in message
    assert not Route.objects.exists()


def test_the_demo_config_has_a_route(tmp_path, env) -> None:
    demo = yaml.safe_load(Path("tokonomics/demo.yaml").read_text().replace("${SIM_PORT}", "8100"))
    assert demo["accounts"][0]["routes"], "README promises one route in the demo config"  # applied by seeddemo


def test_a_route_may_set_its_own_response_cache_ttl_and_temperature_rule(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["routes"] = [{**ROUTES[0], "cache_ttl_seconds": 600, "cache_nonzero_temperature": True}]
    apply_data(tmp_path, data)
    route = Route.objects.get(name="support-default")
    assert (route.cache_ttl_seconds, route.cache_nonzero_temperature) == (600, True)


def test_a_budget_downgrade_is_applied_and_needs_its_target(tmp_path, env) -> None:
    from billing.models import Budget

    data = with_routes(ROUTES)
    data["accounts"][0]["budgets"][0].update(on_exceed="downgrade", downgrade_to="support-default", downgrade_at=85)
    assert "acme: created budget account/month" in apply_data(tmp_path, data)
    budget = Budget.objects.get(scope="account")
    assert (budget.on_exceed, budget.downgrade_to, budget.downgrade_at) == ("downgrade", "support-default", 85)
    assert apply_data(tmp_path, data).strip() == "No changes."
    data["accounts"][0]["budgets"][0].pop("downgrade_to")
    assert "downgrade needs downgrade_to" in rejected(tmp_path, data)

"""One change, three ways in (the web app, the REST API, a config file): one and the same audit entry.

Each scenario makes one change through each channel, on a fresh database, and checks the entry it leaves
against the same expectation; only the actor differs, by kind.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from alerts.models import BUDGET_ALERT_TYPES
from billing.accounts.management_tokens import management_token_create
from billing.budgets.services import budget_create
from billing.models import Account, AuditEntry, Budget
from proxy.models import ApiKey, ProviderEndpoint
from proxy.services import api_key_create, provider_endpoint_create
from tokonomics.audit import Actor

pytestmark = pytest.mark.django_db

SECRET = "sk-ant-SECRET-credential-0123456789"  # noqa: S105 -- a test value that must never reach the log
ROTATED = "sk-ant-ROTATED-credential-9876543210"  # noqa: S105 -- as above
SETUP = Actor.of_system("test setup")


@dataclass
class Channels:
    """The three ways a change reaches the services, each acting for acme."""

    acme: Account
    web: Client
    token: str
    tmp_path: Path

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        response = Client().generic(method, f"/api/v1/{path}", "" if body is None else json.dumps(body),
                                    content_type="application/json", headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code < 300, response.content

    def post(self, name: str, data: dict[str, Any], *args: Any) -> None:
        response = self.web.post(reverse(name, args=["acme", *args]), data)
        assert response.status_code < 400, response.content

    def config(self, **objects: Any) -> None:
        account = {"slug": "acme", "name": self.acme.name, "plan": self.acme.plan.slug, **objects}
        path = self.tmp_path / "acme.yaml"
        path.write_text(yaml.safe_dump({"accounts": [account]}))
        call_command("applyconfig", str(path), stdout=io.StringIO())


@pytest.fixture
def channels(acme, alice, tmp_path) -> Channels:
    web = Client()
    web.force_login(alice)
    _, token = management_token_create(account=acme, actor=Actor.of_system("tests"), name="ops-token")
    return Channels(acme=acme, web=web, token=token, tmp_path=tmp_path)


def _key(acme: Account) -> ApiKey:
    return api_key_create(account=acme, actor=SETUP, name="ci", environment="staging")[0]


def _budget(acme: Account) -> Budget:
    return budget_create(account=acme, actor=SETUP, scope="tenant", match="*", period="month", limit_usd=5,
                         alert_at=[50, 100])


def _endpoint(acme: Account) -> ProviderEndpoint:
    return provider_endpoint_create(account=acme, actor=SETUP, slug="anthropic", credential=SECRET)


KEY_AFTER = {"account": "Acme Inc", "name": "ci", "environment": "staging", "allowed_models": ["gpt-4o-mini"],
             "expires_at": None, "requests_per_minute": None, "tokens_per_minute": None, "max_concurrent": None,
             "revoked_at": None}
BUDGET_AFTER = {"account": "Acme Inc", "scope": "tenant", "match": "*", "period": "month",
                "limit_usd": "5.000000", "hard": True, "alert_at": [50, 100], "channels": [], "on_exceed": "deny",
                "downgrade_to": "", "downgrade_at": 90}
ENDPOINT_AFTER = {"account": "Acme Inc", "slug": "anthropic", "wire_format": "anthropic",
                  "base_url": "https://api.anthropic.com", "pricing_provider": "anthropic", "deployments": {},
                  "has_credential": True}
CHANNEL_AFTER = {"account": "Acme Inc", "name": "ops", "kind": "email", "url": "", "emails": ["ops@acme.test"],
                 "enabled": True, "event_types": list(BUDGET_ALERT_TYPES)}
RULE_AFTER = {"account": "Acme Inc", "kind": "burn_rate", "scope": "tenant", "match": "*", "window_minutes": 15,
              "multiplier": "5.00", "floor_usd": "1.000000", "channels": [], "enabled": True}


@dataclass
class Scenario:
    action: str
    target: str
    before: dict[str, Any]
    after: dict[str, Any]
    setup: Callable[[Account], Any] | None
    ways: dict[str, Callable[[Channels, Any], None]]


SCENARIOS = {
    "key created": Scenario("key.created", "ci", {}, KEY_AFTER, None, {
        "web": lambda c, _: c.post("key_create", {"name": "ci", "environment": "staging",
                                                  "allowed_models": "gpt-4o-mini"}),
        "api": lambda c, _: c.api("POST", "keys", {"name": "ci", "environment": "staging",
                                                   "allowed_models": ["gpt-4o-mini"]}),
        "config": lambda c, _: c.config(keys=[{"name": "ci", "environment": "staging",
                                               "allowed_models": ["gpt-4o-mini"]}]),
    }),
    "key updated": Scenario("key.updated", "ci", {"allowed_models": []}, {"allowed_models": ["gpt-4o-mini"]}, _key, {
        "api": lambda c, key: c.api("PATCH", f"keys/{key.pk}", {"allowed_models": ["gpt-4o-mini"]}),
        "config": lambda c, _: c.config(keys=[{"name": "ci", "environment": "staging",
                                               "allowed_models": ["gpt-4o-mini"]}]),
    }),
    "key revoked": Scenario("key.revoked", "ci", {"revoked_at": None}, {"revoked_at": "<now>"}, _key, {
        "web": lambda c, key: c.post("key_revoke", {}, key.pk),
        "api": lambda c, key: c.api("POST", f"keys/{key.pk}/revoke"),
    }),
    "budget created": Scenario("budget.created", "tenant * / month", {}, BUDGET_AFTER, None, {
        "web": lambda c, _: c.post("budget_create", {"scope": "tenant", "match": "*", "period": "month",
                                                     "limit_usd": "5", "hard": "on", "alert_at": "50, 100"}),
        "api": lambda c, _: c.api("POST", "budgets", {"scope": "tenant", "match": "*", "period": "month",
                                                      "limit_usd": "5", "alert_at": [50, 100]}),
        "config": lambda c, _: c.config(budgets=[{"scope": "tenant", "match": "*", "period": "month",
                                                  "limit_usd": 5, "alert_at": [50, 100]}]),
    }),
    "budget updated": Scenario("budget.updated", "tenant * / month", {"limit_usd": "5.000000"},
                               {"limit_usd": "7.500000"}, _budget, {
        "web": lambda c, budget: c.post("budget_update", {"scope": "tenant", "match": "*", "period": "month",
                                                          "limit_usd": "7.5", "hard": "on", "alert_at": "50, 100"},
                                        budget.pk),
        "api": lambda c, budget: c.api("PATCH", f"budgets/{budget.pk}", {"limit_usd": "7.5"}),
        "config": lambda c, _: c.config(budgets=[{"scope": "tenant", "match": "*", "period": "month",
                                                  "limit_usd": 7.5, "alert_at": [50, 100]}]),
    }),
    "provider created": Scenario("provider.created", "anthropic", {}, ENDPOINT_AFTER, None, {
        "web": lambda c, _: c.post("provider_save", {"slug": "anthropic", "credential": SECRET}),
        "api": lambda c, _: c.api("POST", "providers", {"slug": "anthropic", "credential": SECRET}),
        "config": lambda c, _: c.config(providers=[{"slug": "anthropic", "api_key": SECRET}]),
    }),
    "provider credential rotated": Scenario("provider.updated", "anthropic", {"credential_changed": False},
                                            {"credential_changed": True}, _endpoint, {
        "web": lambda c, _: c.post("provider_save", {"slug": "anthropic", "credential": ROTATED}),
        "api": lambda c, endpoint: c.api("PATCH", f"providers/{endpoint.pk}", {"credential": ROTATED}),
        "config": lambda c, _: c.config(providers=[{"slug": "anthropic", "api_key": ROTATED}]),
    }),
    "alert channel created": Scenario("alert_channel.created", "ops", {}, CHANNEL_AFTER, None, {
        "web": lambda c, _: c.post("alert_channel_create", {"name": "ops", "kind": "email",
                                                            "emails": "ops@acme.test"}),
        "api": lambda c, _: c.api("POST", "alert-channels", {"name": "ops", "kind": "email",
                                                             "emails": ["ops@acme.test"]}),
        "config": lambda c, _: c.config(alert_channels=[{"name": "ops", "kind": "email", "to": ["ops@acme.test"]}]),
    }),
    "alert rule created": Scenario("alert_rule.created", "burn_rate tenant *", {}, RULE_AFTER, None, {
        "web": lambda c, _: c.post("alert_rule_create", {"scope": "tenant", "match": "*", "window_minutes": 15,
                                                         "multiplier": "5", "floor_usd": "1"}),
        "api": lambda c, _: c.api("POST", "alert-rules", {"scope": "tenant", "match": "*"}),
        "config": lambda c, _: c.config(alert_rules=[{"scope": "tenant", "match": "*"}]),
    }),
}
CASES = [pytest.param(name, way, id=f"{name} via {way}") for name, s in SCENARIOS.items() for way in s.ways]
ACTOR_KINDS = {"web": ("user", "alice@acme.test"), "api": ("token", "ops-token (mt_"),
               "config": ("config", "config:acme.yaml")}


@pytest.mark.parametrize(("name", "way"), CASES)
def test_the_same_change_leaves_the_same_entry_whichever_way_it_came(channels: Channels, name: str, way: str) -> None:
    scenario = SCENARIOS[name]
    obj = scenario.setup(channels.acme) if scenario.setup else None
    AuditEntry.objects.all().delete()  # the setup's own entries

    scenario.ways[way](channels, obj)

    entries = list(AuditEntry.objects.filter(action=scenario.action))
    assert len(entries) == 1, [(e.action, e.target, e.before, e.after) for e in AuditEntry.objects.all()]
    entry = entries[0]
    after = dict(entry.after)
    if name == "key created":
        assert after.pop("prefix").startswith("mk_")  # random per key: the rest must match
    if name == "key revoked":
        assert after["revoked_at"] and after["revoked_at"] >= entry.created_at.isoformat()[:19]
        after["revoked_at"] = "<now>"
    assert (entry.target, entry.before, after) == (scenario.target, scenario.before, scenario.after)
    kind, label = ACTOR_KINDS[way]
    assert entry.actor_kind == kind and entry.actor_label.startswith(label)
    assert (entry.actor is not None) is (way == "web")
    assert (entry.actor_token is not None) is (way == "api")
    for secret in (SECRET, ROTATED):
        assert secret not in json.dumps([entry.before, entry.after])


def test_every_channel_is_covered_for_each_kind_of_object() -> None:
    # Keys, budgets, providers and alerts, each through the web app, the API and a config file (a revocation
    # has no config form: a file declares keys, it never revokes them).
    ways = {(s.action.split(".")[0], way) for s in SCENARIOS.values() for way in s.ways}
    for noun in ("key", "budget", "provider", "alert_channel", "alert_rule"):
        assert {w for n, w in ways if n == noun} == {"web", "api", "config"}, noun


def test_a_config_file_is_named_by_file_name_only(channels: Channels) -> None:
    channels.config(budgets=[{"scope": "account", "period": "month", "limit_usd": 100}])
    entry = AuditEntry.objects.get(action="budget.created")
    assert entry.actor_label == "config:acme.yaml" and str(channels.tmp_path) not in entry.actor_label


def test_a_rejected_change_leaves_no_entry(channels: Channels) -> None:
    entries = AuditEntry.objects.count()  # the fixture's token creation is one
    response = channels.web.post(reverse("budget_create", args=["acme"]),
                                 {"scope": "key", "match": "no-such-key", "period": "month", "limit_usd": "5",
                                  "alert_at": ""})
    assert response.status_code == 400
    assert AuditEntry.objects.count() == entries and not Budget.objects.exists()

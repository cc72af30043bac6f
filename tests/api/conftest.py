"""REST API fixtures: management tokens for acme (alice's account) and globex (charlie's), and a JSON client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import AlertChannel, AlertRule
from billing.models import Account, Budget, UsageRecord
from billing.usage.rollups import usage_rollup_add
from proxy.keys import generate_key, hash_key, visible_prefix
from proxy.models import ApiKey, GuardrailPolicy, ProviderEndpoint, Route

from ..support import ApiClient, token_for, usage_record_create


# Tokens belong to accounts, not people; the names say whose account each one speaks for. (No seats are
# created: hashing their passwords would only slow every test down.)
@pytest.fixture
def acme_api(acme) -> ApiClient:
    """An admin token of acme, alice's account."""
    return ApiClient(token_for(acme, name="alice-admin"))


@pytest.fixture
def acme_viewer_api(acme) -> ApiClient:
    """A read-only token of acme."""
    return ApiClient(token_for(acme, read_only=True, name="bob-viewer"))


@pytest.fixture
def globex_api(globex) -> ApiClient:
    """An admin token of globex, charlie's account: an outsider to acme."""
    return ApiClient(token_for(globex, name="charlie-admin"))


@pytest.fixture
def acme_key(acme) -> ApiKey:
    plaintext = generate_key()
    return ApiKey.objects.create(
        account=acme, name="ci", key_hash=hash_key(plaintext), prefix=visible_prefix(plaintext)
    )


@pytest.fixture
def acme_endpoint(acme) -> ProviderEndpoint:
    endpoint = ProviderEndpoint(account=acme, slug="openai", wire_format="openai", base_url="https://api.openai.com/v1",
                                pricing_provider="openai")
    endpoint.set_credential("sk-upstream-secret-acme")
    endpoint.save()
    return endpoint


@pytest.fixture
def acme_route(acme, acme_endpoint) -> Route:
    return Route.objects.create(account=acme, name="support-default",
                                targets=[{"endpoint": "openai", "model": "gpt-4o-mini"}])


@pytest.fixture
def acme_budget(acme) -> Budget:
    return Budget.objects.create(account=acme, scope="account", period="month", limit_usd=Decimal("500"),
                                 alert_at=[50, 100])


@pytest.fixture
def acme_channel(acme) -> AlertChannel:
    channel = AlertChannel(account=acme, name="ops-hook", kind="webhook", url="https://hooks.example.com/acme")
    channel.set_secret("whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWFjbWU=")
    channel.save()
    return channel


@pytest.fixture
def acme_rule(acme) -> AlertRule:
    return AlertRule.objects.create(account=acme, scope="feature", match="*")


def usage_record(account: Account, request_id: str, created_at: datetime | None = None, **fields: Any) -> UsageRecord:
    """One stored record, added to the rollups as the ledger would (aggregates are read from them)."""
    values: dict[str, Any] = {
        "account": account, "request_id": request_id, "provider": "openai", "model": "gpt-4o-mini",
        "status_code": 200, "created_at": created_at or timezone.now(), "input_tokens": 100, "output_tokens": 20,
        "cost_usd": Decimal("0.000027"),
    }
    values.update(fields)
    record = usage_record_create(**values)
    usage_rollup_add(records=[record])
    return record


@dataclass
class AcmeObjects:
    key: ApiKey
    endpoint: ProviderEndpoint
    budget: Budget
    channel: AlertChannel
    rule: AlertRule
    record: UsageRecord
    route: Route

    @property
    def ids(self) -> dict[str, int | str]:
        return {
            "key_id": self.key.pk, "endpoint_id": self.endpoint.pk, "budget_id": self.budget.pk,
            "channel_id": self.channel.pk, "rule_id": self.rule.pk, "session": self.record.session,
            "route_id": self.route.pk,
        }


@pytest.fixture
def acme_objects(acme, acme_key, acme_endpoint, acme_budget, acme_channel, acme_rule, acme_route) -> AcmeObjects:
    record = usage_record(acme, "req_acme_1", key=acme_key, feature="support-bot", tenant="initech",
                          session="run-acme-1")
    GuardrailPolicy.objects.create(account=acme, key=None, spec={"pii": {"types": ["email"]}})
    GuardrailPolicy.objects.create(account=acme, key=acme_key, spec={"pii": {"action": "warn"}})
    return AcmeObjects(acme_key, acme_endpoint, acme_budget, acme_channel, acme_rule, record, acme_route)


# Every operation of the API: (method, path template, a valid body). Tests check this table against the schema,
# so an endpoint added without its isolation and read-only tests fails them.
OPERATIONS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/account", None),
    ("PATCH", "/api/v1/account", {"allow_unpriced_models": True}),
    ("GET", "/api/v1/keys", None),
    ("POST", "/api/v1/keys", {"name": "new-key"}),
    ("GET", "/api/v1/keys/{key_id}", None),
    ("PATCH", "/api/v1/keys/{key_id}", {"environment": "staging"}),
    ("POST", "/api/v1/keys/{key_id}/revoke", None),
    ("GET", "/api/v1/providers", None),
    ("POST", "/api/v1/providers", {"slug": "anthropic", "credential": "sk-ant-new"}),
    ("GET", "/api/v1/providers/{endpoint_id}", None),
    ("PATCH", "/api/v1/providers/{endpoint_id}", {"credential": "sk-rotated"}),
    ("DELETE", "/api/v1/providers/{endpoint_id}", None),
    ("GET", "/api/v1/routes", None),
    ("POST", "/api/v1/routes", {"name": "cheap", "targets": [{"endpoint": "openai", "model": "gpt-4o-mini"}]}),
    ("GET", "/api/v1/routes/{route_id}", None),
    ("PATCH", "/api/v1/routes/{route_id}", {"strategy": "lowest-cost"}),
    ("DELETE", "/api/v1/routes/{route_id}", None),
    ("GET", "/api/v1/budgets", None),
    ("POST", "/api/v1/budgets", {"scope": "feature", "match": "*", "period": "day", "limit_usd": "5"}),
    ("GET", "/api/v1/budgets/{budget_id}", None),
    ("PATCH", "/api/v1/budgets/{budget_id}", {"limit_usd": "750.5"}),
    ("DELETE", "/api/v1/budgets/{budget_id}", None),
    ("GET", "/api/v1/alert-channels", None),
    ("POST", "/api/v1/alert-channels", {"name": "mail", "kind": "email", "emails": ["ops@acme.test"]}),
    ("GET", "/api/v1/alert-channels/{channel_id}", None),
    ("PATCH", "/api/v1/alert-channels/{channel_id}", {"url": "https://hooks.example.com/new"}),
    ("DELETE", "/api/v1/alert-channels/{channel_id}", None),
    ("GET", "/api/v1/alert-rules", None),
    ("POST", "/api/v1/alert-rules", {"scope": "tenant", "match": "*"}),
    ("GET", "/api/v1/alert-rules/{rule_id}", None),
    ("PATCH", "/api/v1/alert-rules/{rule_id}", {"window_minutes": 30}),
    ("DELETE", "/api/v1/alert-rules/{rule_id}", None),
    ("GET", "/api/v1/usage/records", None),
    ("GET", "/api/v1/usage/aggregates?group_by=feature", None),
    ("GET", "/api/v1/sessions", None),
    ("GET", "/api/v1/sessions/{session}", None),
    ("GET", "/api/v1/guardrails", None),
    ("GET", "/api/v1/guardrails/default", None),
    ("PUT", "/api/v1/guardrails/default", {"spec": {"pii": {"types": ["email"]}}}),
    ("DELETE", "/api/v1/guardrails/default", None),
    ("GET", "/api/v1/keys/{key_id}/guardrails", None),
    ("PUT", "/api/v1/keys/{key_id}/guardrails", {"spec": {"pii": {"types": ["card"], "action": "block"}}}),
    ("DELETE", "/api/v1/keys/{key_id}/guardrails", None),
    ("POST", "/api/v1/guardrails/try", {"text": "mail jane@example.com", "spec": {"pii": {"types": ["email"]}}}),
]
WRITES = [op for op in OPERATIONS if op[0] != "GET"]
OBJECT_OPERATIONS = [op for op in OPERATIONS if "{" in op[1]]


def operation_id(operation: tuple[str, str, Any]) -> str:
    return f"{operation[0]} {operation[1]}"


def account_snapshot() -> list[list[dict[str, Any]]]:
    """Every row an API write could touch, to show that a refused request changed nothing."""
    return [
        list(model.objects.order_by("pk").values())
        for model in (Account, ApiKey, ProviderEndpoint, Route, Budget, AlertChannel, AlertRule)
    ]

"""Fuzz every operation from the API's own OpenAPI schema (schemathesis 4, valid and invalid input) against the
production ASGI app under uvicorn: no input may produce a server error, and every success must match the schema.

Kept well under a minute: a few examples an operation, and one account set up for the whole module (committed,
since the server answers from other threads) instead of a database flush per operation."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from decimal import Decimal

import pytest
import schemathesis
from django.db import connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from alerts.models import AlertChannel, AlertRule
from billing.accounts.management_tokens import management_token_create
from billing.models import Account, Budget, ManagementToken, Plan
from proxy.keys import generate_key, hash_key, visible_prefix
from proxy.models import ApiKey, ProviderEndpoint
from tokonomics.api import api
from tokonomics.audit import Actor

from ..support import ServerThread
from .conftest import usage_record

EXAMPLES_PER_OPERATION = 12

# The document /api/v1/openapi.json serves (test_auth checks that it does), taken from the app in-process so
# that collecting the tests needs neither a server nor the database. The coverage phase (every boundary and
# invalid value the schema implies: ~1,500 requests, 30-60 s here) is left to deliberate deep runs; it passed
# when this test was written.
schema = schemathesis.openapi.from_dict(
    api.get_openapi_schema(),
    config=schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}}),
)


class FuzzTarget:
    def __init__(self, url: str, token: str, object_ids: dict[str, int]) -> None:
        self.url, self.token, self.object_ids = url, token, object_ids


@pytest.fixture(scope="module")
def fuzz_target(django_db_setup, django_db_blocker) -> Iterator[FuzzTarget]:
    with django_db_blocker.unblock():
        for fields in importlib.import_module("billing.migrations.0003_seed_plans").PLANS:
            Plan.objects.get_or_create(slug=fields["slug"], defaults=fields)
        account = Account.objects.create(slug="fuzz-co", name="Fuzz Co", plan=Plan.objects.get(slug="starter"))
        object_ids = _one_of_everything(account)
        token = management_token_create(account=account, actor=Actor.of_system("tests"), name="fuzz")[1]
        # Server threads must not keep connections open, or the test database could not be dropped at the end.
        max_age = connections.settings["default"]["CONN_MAX_AGE"]
        connections.settings["default"]["CONN_MAX_AGE"] = 0
        try:
            with ServerThread() as server:
                yield FuzzTarget(server.url, token, object_ids)
        finally:
            connections.settings["default"]["CONN_MAX_AGE"] = max_age
            ManagementToken.objects.filter(account=account).delete()
            account.delete()  # cascades to everything the fuzzing created


def _one_of_everything(account: Account) -> dict[str, int]:
    plaintext = generate_key()
    key = ApiKey.objects.create(account=account, name="ci", key_hash=hash_key(plaintext),
                                prefix=visible_prefix(plaintext))
    endpoint = ProviderEndpoint.objects.create(account=account, slug="openai", wire_format="openai",
                                               base_url="https://api.openai.com/v1")
    budget = Budget.objects.create(account=account, scope="account", period="month", limit_usd=Decimal(100))
    channel = AlertChannel.objects.create(account=account, name="ops", kind="email", emails=["ops@fuzz.test"])
    rule = AlertRule.objects.create(account=account, scope="tenant")
    usage_record(account, "req_fuzz_1", key=key, feature="support-bot")
    return {"key_id": key.pk, "endpoint_id": endpoint.pk, "budget_id": budget.pk, "channel_id": channel.pk,
            "rule_id": rule.pk}


# The mark makes pytest-django create the test database; the test itself only talks HTTP.
@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is reproducible, never flaky
    suppress_health_check=list(HealthCheck),
)
def test_no_input_causes_a_server_error(case, fuzz_target: FuzzTarget) -> None:
    # Valid ids are pointed at the account's real objects, so fuzzed bodies reach the update code, not a 404.
    for name, value in (case.path_parameters or {}).items():
        if isinstance(value, int) and name in fuzz_target.object_ids:
            case.path_parameters[name] = fuzz_target.object_ids[name]
    case.call_and_validate(
        base_url=fuzz_target.url,
        headers={"Authorization": f"Bearer {fuzz_target.token}"},
        checks=[not_a_server_error, response_schema_conformance],
        timeout=10,
    )

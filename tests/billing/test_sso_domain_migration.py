"""The migration that turns SsoConfig.allowed_domains (a JSON list nobody proved) into domain claims."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def _migrate(targets):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_existing_allowed_domains_become_pending_claims(plans):
    loader = MigrationExecutor(connection).loader
    target = next(key for key in loader.disk_migrations
                  if key[0] == "billing" and key[1].endswith("_i13_sso_domain_claims"))
    before = [dep for dep in loader.get_migration(*target).dependencies if dep[0] == "billing"]
    old = _migrate(before)
    account = old.get_model("billing", "Account").objects.create(
        slug="acme", name="Acme Inc", plan_id=plans["enterprise"].pk, timezone="UTC")
    old.get_model("billing", "SsoConfig").objects.create(
        account=account, issuer="https://login.acme.test", client_id="x",
        allowed_domains=["Acme.test", "acme.fr", " acme.fr "])
    try:
        new = _migrate([target])
        claims = new.get_model("billing", "SsoDomain").objects.order_by("domain")
        assert [(c.domain, c.status) for c in claims] == [("acme.fr", "pending"), ("acme.test", "pending")]
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_rolling_back_restores_only_verified_claims(plans):
    loader = MigrationExecutor(connection).loader
    target = next(key for key in loader.disk_migrations
                  if key[0] == "billing" and key[1].endswith("_i13_sso_domain_claims"))
    before = [dep for dep in loader.get_migration(*target).dependencies if dep[0] == "billing"]
    new = _migrate([target])
    account = new.get_model("billing", "Account").objects.create(
        slug="acme", name="Acme Inc", plan_id=plans["enterprise"].pk, timezone="UTC")
    config = new.get_model("billing", "SsoConfig").objects.create(
        account=account, issuer="https://login.acme.test", client_id="x")
    claims = new.get_model("billing", "SsoDomain").objects
    claims.create(config=config, domain="acme.test", status="verified")
    claims.create(config=config, domain="unproven.test", status="pending")
    try:
        old = _migrate(before)
        # A pending claim was never proved: back in the old list it would sign people in.
        assert old.get_model("billing", "SsoConfig").objects.get().allowed_domains == ["acme.test"]
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

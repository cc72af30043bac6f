"""The migration that turns SsoConfig.allowed_domains (a JSON list nobody proved) into domain claims."""

from __future__ import annotations

import pytest

from ..migration_steps import loader, migrate_to, migrate_to_latest, migration_ending


@pytest.mark.django_db(transaction=True)
def test_existing_allowed_domains_become_pending_claims(plans):
    steps = loader()
    target = migration_ending("billing", "_i13_sso_domain_claims")
    before = [dep for dep in steps.get_migration(*target).dependencies if dep[0] == "billing"]
    old = migrate_to(before)
    account = old.get_model("billing", "Account").objects.create(
        slug="acme", name="Acme Inc", plan_id=plans["enterprise"].pk, timezone="UTC")
    old.get_model("billing", "SsoConfig").objects.create(
        account=account, issuer="https://login.acme.test", client_id="x",
        allowed_domains=["Acme.test", "acme.fr", " acme.fr "])
    try:
        new = migrate_to([target])
        claims = new.get_model("billing", "SsoDomain").objects.order_by("domain")
        assert [(c.domain, c.status) for c in claims] == [("acme.fr", "pending"), ("acme.test", "pending")]
    finally:
        migrate_to_latest()


@pytest.mark.django_db(transaction=True)
def test_rolling_back_restores_only_verified_claims(plans):
    steps = loader()
    target = migration_ending("billing", "_i13_sso_domain_claims")
    before = [dep for dep in steps.get_migration(*target).dependencies if dep[0] == "billing"]
    new = migrate_to([target])
    account = new.get_model("billing", "Account").objects.create(
        slug="acme", name="Acme Inc", plan_id=plans["enterprise"].pk, timezone="UTC")
    config = new.get_model("billing", "SsoConfig").objects.create(
        account=account, issuer="https://login.acme.test", client_id="x")
    claims = new.get_model("billing", "SsoDomain").objects
    claims.create(config=config, domain="acme.test", status="verified")
    claims.create(config=config, domain="unproven.test", status="pending")
    try:
        old = migrate_to(before)
        # A pending claim was never proved: back in the old list it would sign people in.
        assert old.get_model("billing", "SsoConfig").objects.get().allowed_domains == ["acme.test"]
    finally:
        migrate_to_latest()

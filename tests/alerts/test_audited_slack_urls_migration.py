"""The migration that masks the Slack URLs the audit log kept in plaintext before they were encrypted."""

from __future__ import annotations

import pytest
from django.db import connection

from alerts.models import masked_url

from ..migration_steps import loader, migrate_to, migrate_to_latest, migration_ending

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XOXBSECRETTOKEN0123456789"
OTHER_SLACK_URL = "https://hooks.slack.com/services/T000/B000/XOXBOTHERTOKEN9876543210"
WEBHOOK_URL = "https://hooks.example.com/services/visible"



@pytest.mark.django_db(transaction=True)
def test_slack_urls_in_old_audit_entries_are_masked(plans):
    steps = loader()
    target = migration_ending("alerts", "_i13_fixsecrets_mask_audited_slack_urls")
    # Everything else at its latest (the rows below need today's billing tables), alerts just before.
    before = [dep for dep in steps.get_migration(*target).dependencies if dep[0] == "alerts"]
    before += [leaf for leaf in steps.graph.leaf_nodes() if leaf[0] != "alerts"]
    old = migrate_to(before)
    account = old.get_model("billing", "Account").objects.create(
        slug="acme", name="Acme Inc", plan_id=plans["pro"].pk, timezone="UTC")
    entries = old.get_model("billing", "AuditEntry").objects
    created = entries.create(account=account, actor_label="a", action="alert_channel.created",
                             target=f"slack:{SLACK_URL}", after={"kind": "slack", "url": SLACK_URL, "name": "x"})
    updated = entries.create(account=account, actor_label="a", action="alert_channel.updated", target="chat",
                             before={"url": SLACK_URL}, after={"url": OTHER_SLACK_URL})
    webhook = entries.create(account=account, actor_label="a", action="alert_channel.created", target="hooks",
                             after={"kind": "webhook", "url": WEBHOOK_URL})
    other = entries.create(account=account, actor_label="a", action="key.created", target="ci", after={"x": 1})
    try:
        new = migrate_to([target])
        entries = new.get_model("billing", "AuditEntry").objects
        created, updated, webhook, unrelated = (entries.get(pk=e.pk) for e in (created, updated, webhook, other))
        assert created.target == f"slack:{masked_url(SLACK_URL)}"
        assert created.after == {"kind": "slack", "url": masked_url(SLACK_URL), "name": "x"}
        assert updated.before == {"url": masked_url(SLACK_URL)}
        assert updated.after == {"url": masked_url(OTHER_SLACK_URL)}
        assert webhook.after == {"kind": "webhook", "url": WEBHOOK_URL}  # not a secret: left as it was
        assert unrelated.after == {"x": 1}
        with connection.cursor() as cursor:
            cursor.execute("SELECT target, before, after FROM billing_auditentry")
            assert "XOXB" not in repr(cursor.fetchall())
        migrate_to(before)  # reversible (as a no-op)
    finally:
        migrate_to_latest()

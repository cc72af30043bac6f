"""The migration that gives audit entries their kind of actor classifies the entries written before it."""

from __future__ import annotations

import pytest

from ..migration_steps import loader, migrate_to, migrate_to_latest, migration_ending


@pytest.mark.django_db(transaction=True)
def test_older_entries_get_the_kind_of_actor_their_label_shows(plans, alice):
    target = migration_ending("billing", "_i14_audit_actor")
    before = [dep for dep in loader().get_migration(*target).dependencies if dep[0] == "billing"]
    old = migrate_to(before)
    account = old.get_model("billing", "Account").objects.get(slug="acme")
    entries = old.get_model("billing", "AuditEntry").objects
    labels = {
        "person": ("alice@acme.test", alice.pk),
        "deleted person": ("gone@acme.test", None),
        "token": ("ci-token (mt_AbCdEfGh…, admin)", None),
        "command": ("replaydeadletters", None),
    }
    for target_name, (label, user_id) in labels.items():
        entries.create(account=account, actor_id=user_id, actor_label=label, action="x", target=target_name)
    try:
        new = migrate_to([target])
        kinds = dict(new.get_model("billing", "AuditEntry").objects.values_list("target", "actor_kind"))
        assert kinds == {"person": "user", "deleted person": "user", "token": "token", "command": "system"}
    finally:
        migrate_to_latest()

"""`guardrails:` in an applyconfig file: the account default and a key's own policy, validated with the file,
applied through the audited service, idempotent, and removed by an explicit null."""

from __future__ import annotations

import pytest

from billing.models import Account, AuditEntry
from proxy.models import GuardrailPolicy

from .test_applyconfig import apply_data, env, example, rejected  # noqa: F401 (env: the fixture below uses)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("env")]

DEFAULT = {"pii": {"types": ["email", "card"], "action": "mask"},
           "system_prompt": {"text": "You are Acme's assistant.", "mode": "prepend"}}
KEY_OWN = {"rules": [{"id": "no-project-x", "kind": "keywords", "keywords": ["project x"], "scope": "both",
                      "action": "block"}]}


def with_guardrails(default: object = DEFAULT, key: object = KEY_OWN) -> dict:
    data = example()
    data["accounts"][0]["guardrails"] = default
    data["accounts"][0]["keys"][0]["guardrails"] = key
    return data


def test_policies_are_applied_once_and_audited(tmp_path) -> None:
    output = apply_data(tmp_path, with_guardrails())
    assert "acme: created guardrails" in output and "acme: created guardrails of key ci" in output
    acme = Account.objects.get(slug="acme")
    assert GuardrailPolicy.objects.get(account=acme, key=None).spec == DEFAULT
    assert GuardrailPolicy.objects.get(account=acme, key__name="ci").spec == KEY_OWN
    assert AuditEntry.objects.filter(account=acme, action="guardrails.created").count() == 2
    assert apply_data(tmp_path, with_guardrails()).strip() == "No changes."


def test_leaving_guardrails_out_keeps_them_and_null_removes_them(tmp_path) -> None:
    apply_data(tmp_path, with_guardrails())
    assert apply_data(tmp_path, example()).strip() == "No changes."
    assert GuardrailPolicy.objects.count() == 2
    output = apply_data(tmp_path, with_guardrails(default=None, key=None))
    assert "acme: deleted guardrails" in output and "acme: deleted guardrails of key ci" in output
    assert not GuardrailPolicy.objects.exists()


def test_a_changed_policy_is_an_update(tmp_path) -> None:
    apply_data(tmp_path, with_guardrails())
    output = apply_data(tmp_path, with_guardrails(default={"pii": {"types": ["email"]}}))
    assert "acme: updated guardrails" in output
    assert GuardrailPolicy.objects.get(key=None).spec == {"pii": {"types": ["email"]}}


def test_an_invalid_policy_rejects_the_whole_file_naming_the_field(tmp_path) -> None:
    bad_rule = {"rules": [{"id": "Bad Id", "kind": "regex", "pattern": "x", "scope": "input", "action": "block"}]}
    error = rejected(tmp_path, with_guardrails(key=bad_rule))
    assert "keys[0] (ci).guardrails.rules" in error and "nothing changed" in error
    assert not Account.objects.filter(slug="acme").exists()

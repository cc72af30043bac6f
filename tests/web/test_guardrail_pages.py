"""The guardrails pages: the default and a key's policy edited without JSON, saved through the audited service,
removed after a confirm step; "try this text" shows the matches and the masked text and keeps nothing."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from billing.models import AuditEntry
from proxy.keys import generate_key
from proxy.models import ApiKey, GuardrailPolicy

from ..support import make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_key(acme) -> ApiKey:
    return make_key(acme, generate_key(), name="ci")

EMAIL = "jane.doe@example.com"
FORM = {
    "pii_types": ["email", "card"], "pii_action": "mask", "pii_replacement": "label", "pii_custom": "",
    "rules": "no-project-x | block | both | keywords | project x, falcon\nsalary | warn | input | regex | salar(y|ies)",
    "system_prompt": "You are Acme's assistant.", "system_prompt_mode": "prepend",
    "injection_enabled": "on", "injection_threshold": "0.6", "injection_action": "warn", "save": "1",
}


def test_an_admin_sets_the_default_from_the_form(client, alice, acme) -> None:
    client.force_login(alice)
    page = client.get(reverse("guardrail_list", args=["acme"]))
    assert page.status_code == 200 and "Set up the default" in page.content.decode()
    response = client.post(reverse("guardrail_edit", args=["acme", "default"]), FORM)
    assert response.status_code == 302, response.content.decode()
    spec = GuardrailPolicy.objects.get(account=acme, key=None).spec
    assert spec["pii"] == {"types": ["email", "card"], "action": "mask", "replacement": "label"}
    assert spec["rules"][0] == {"id": "no-project-x", "kind": "keywords", "scope": "both", "action": "block",
                                "keywords": ["project x", "falcon"]}
    assert spec["rules"][1]["pattern"] == "salar(y|ies)"
    assert spec["system_prompt"] == {"text": "You are Acme's assistant.", "mode": "prepend"}
    assert spec["injection"] == {"enabled": True, "threshold": 0.6, "action": "warn"}
    assert AuditEntry.objects.filter(account=acme, action="guardrails.created", target="default").exists()
    edit = client.get(reverse("guardrail_edit", args=["acme", "default"])).content.decode()
    assert "no-project-x | block | both | keywords | project x, falcon" in edit  # the form reads it back
    listed = client.get(reverse("guardrail_list", args=["acme"])).content.decode()
    assert "no-project-x" in listed and "You are Acme" in listed


def test_a_keys_policy_and_its_removal(client, alice, acme, acme_key) -> None:
    client.force_login(alice)
    form = {**FORM, "pii_types": [], "rules": "", "injection_enabled": "", "system_prompt": "Be brief."}
    assert client.post(reverse("guardrail_edit", args=["acme", acme_key.pk]), form).status_code == 302
    assert GuardrailPolicy.objects.get(key=acme_key).spec == {"system_prompt": {"text": "Be brief.",
                                                                                "mode": "prepend"}}
    delete = reverse("guardrail_delete", args=["acme", acme_key.pk])
    assert "Remove guardrails" in client.get(delete).content.decode()
    assert client.post(delete).status_code == 302
    assert not GuardrailPolicy.objects.filter(key=acme_key).exists()


def test_a_bad_rule_line_or_pattern_is_shown_on_the_form_and_nothing_is_saved(client, alice, acme) -> None:
    client.force_login(alice)
    response = client.post(reverse("guardrail_edit", args=["acme", "default"]),
                           {**FORM, "rules": "only | two"})
    assert response.status_code == 400 and "five parts" in response.content.decode()
    response = client.post(reverse("guardrail_edit", args=["acme", "default"]),
                           {**FORM, "rules": "Bad Id | block | input | regex | x"})
    assert response.status_code == 400
    assert not GuardrailPolicy.objects.exists()


def test_members_see_the_page_but_may_not_edit(client, bob, acme) -> None:
    client.force_login(bob)
    assert client.get(reverse("guardrail_list", args=["acme"])).status_code == 200
    assert client.get(reverse("guardrail_edit", args=["acme", "default"])).status_code == 403
    assert client.post(reverse("guardrail_edit", args=["acme", "default"]), FORM).status_code == 403


def test_another_accounts_key_is_not_found(client, charlie, acme_key) -> None:
    client.force_login(charlie)
    assert client.get(reverse("guardrail_edit", args=["globex", acme_key.pk])).status_code in (403, 404)


def test_try_on_the_form_evaluates_unsaved_and_keeps_nothing(client, alice, acme, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client.force_login(alice)
    audit_before = AuditEntry.objects.count()
    response = client.post(reverse("guardrail_edit", args=["acme", "default"]),
                           {**FORM, "save": "", "try": "1", "text": f"Mail {EMAIL} about the salary.",
                            "scope": "input"})
    body = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert "Mail [EMAIL] about the salary." in body and "pii-email · mask" in body and "salary · warn" in body
    blocked = client.post(reverse("guardrail_edit", args=["acme", "default"]),
                          {**FORM, "try": "1", "text": "news on project x", "scope": "input"}).content.decode()
    assert "blocked" in blocked and "no-project-x" in blocked
    assert not GuardrailPolicy.objects.exists() and AuditEntry.objects.count() == audit_before
    assert EMAIL not in "\n".join(r.getMessage() for r in caplog.records)


def test_try_on_the_list_uses_the_stored_policy(client, bob, acme, acme_key) -> None:
    GuardrailPolicy.objects.create(account=acme, key=None, spec={"pii": {"types": ["email"]}})
    client.force_login(bob)  # a member may try, not edit
    response = client.post(reverse("guardrail_try", args=["acme"]),
                           {"target": str(acme_key.pk), "text": f"to {EMAIL}", "scope": "input"})
    assert response.status_code == 200 and "to [EMAIL]" in response.content.decode()
    assert response["Cache-Control"] == "no-store"

"""The guardrail policies over the REST API: set, read, merge, delete (each write audited), and the
"try this text" evaluation, which stores nothing."""

from __future__ import annotations

import pytest

from billing.models import AuditEntry
from proxy.models import GuardrailPolicy

from ..support import ApiClient

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"


def test_a_default_and_a_key_policy_merge_into_the_effective_one(acme, acme_key, acme_api: ApiClient) -> None:
    default = acme_api.request("PUT", "guardrails/default", {"spec": {"pii": {"types": ["email"]},
                                                                      "system_prompt": {"text": "Be kind."}}})
    assert default.status_code == 200, default.content
    assert default.json()["key_id"] is None
    own = acme_api.request("PUT", f"keys/{acme_key.pk}/guardrails",
                           {"spec": {"system_prompt": {"text": "Be brief.", "mode": "replace"}}})
    assert own.status_code == 200 and own.json()["key_name"] == acme_key.name
    shown = acme_api.get(f"keys/{acme_key.pk}/guardrails").json()
    assert shown["own"] == {"system_prompt": {"text": "Be brief.", "mode": "replace"}}
    assert shown["effective"]["system_prompt"]["text"] == "Be brief."
    assert shown["effective"]["pii"]["types"] == ["email"]
    assert [p["key_id"] for p in acme_api.get("guardrails").json()] == [None, acme_key.pk]
    actions = list(AuditEntry.objects.filter(account=acme).order_by("id").values_list("action", "target"))
    assert actions[-2:] == [("guardrails.created", "default"), ("guardrails.created", f"key:{acme_key.name}")]


def test_an_invalid_spec_is_refused_with_every_problem(acme, acme_api: ApiClient) -> None:
    response = acme_api.request("PUT", "guardrails/default", {"spec": {
        "rules": [{"id": "Not A Slug", "kind": "regex", "pattern": "x", "scope": "input", "action": "block"}]}})
    assert response.status_code == 422, response.content
    assert "rules" in response.content.decode()
    assert not GuardrailPolicy.objects.filter(account=acme).exists()


def test_updates_and_deletes_are_audited_and_a_second_delete_is_404(acme, acme_api: ApiClient) -> None:
    acme_api.request("PUT", "guardrails/default", {"spec": {"pii": {"types": ["email"]}}})
    acme_api.request("PUT", "guardrails/default", {"spec": {"pii": {"types": ["card"]}}})
    assert acme_api.delete("guardrails/default").status_code == 204
    assert acme_api.delete("guardrails/default").status_code == 404
    assert acme_api.get("guardrails/default").status_code == 404
    entries = AuditEntry.objects.filter(account=acme, action__startswith="guardrails.").order_by("id")
    assert [e.action for e in entries] == ["guardrails.created", "guardrails.updated", "guardrails.deleted"]
    assert entries[1].before == {"spec": {"pii": {"types": ["email"]}}}


def test_try_shows_what_matches_and_the_masked_text_and_keeps_nothing(acme, acme_api: ApiClient) -> None:
    audit_before = AuditEntry.objects.count()
    response = acme_api.post("guardrails/try", {"text": f"Write to {EMAIL} now.",
                                                "spec": {"pii": {"types": ["email"]}}})
    assert response.status_code == 200, response.content
    out = response.json()
    assert EMAIL not in out["result"] and "[EMAIL" in out["result"]
    assert out["hits"] == [{"rule": "pii-email", "action": "mask", "count": 1}] and out["blocked_by"] is None
    blocked = acme_api.post("guardrails/try", {"text": "about project x", "spec": {"rules": [
        {"id": "no-x", "kind": "keywords", "keywords": ["project x"], "scope": "input", "action": "block"}]}})
    assert blocked.json()["blocked_by"] == "no-x" and blocked.json()["result"] == ""
    assert AuditEntry.objects.count() == audit_before
    assert not GuardrailPolicy.objects.filter(account=acme).exists()


def test_try_without_a_spec_uses_the_keys_effective_policy(acme, acme_key, acme_api: ApiClient) -> None:
    assert acme_api.post("guardrails/try", {"text": EMAIL}).json()["result"] == EMAIL  # no policy: unchanged
    acme_api.request("PUT", "guardrails/default", {"spec": {"pii": {"types": ["email"]}}})
    out = acme_api.post("guardrails/try", {"text": EMAIL, "key_id": acme_key.pk}).json()
    assert EMAIL not in out["result"]

"""The policies' Django side: the directory's load merges the account default with the key's own and compiles
it; a stored spec that no longer compiles fails closed; every write moves the configuration version."""

from __future__ import annotations

import pytest

from proxy.directory import CONFIG_VERSION_KEY, load_key
from proxy.guardrail_policies import guardrail_policy_delete, guardrail_policy_put, key_guardrails_load
from proxy.guardrails.policy import GuardrailBlocked
from proxy.keys import generate_key, hash_key
from proxy.models import GuardrailPolicy
from tokonomics.audit import Actor
from tokonomics.redis_client import sync_redis

from ..support import make_key

pytestmark = pytest.mark.django_db
ACTOR = Actor.of_system("tests")


def test_a_key_without_any_policy_loads_none(acme) -> None:
    plaintext = generate_key()
    make_key(acme, plaintext)
    entry = load_key(hash_key(plaintext))
    assert entry is not None and entry.guardrails is None


def test_the_default_and_the_keys_own_merge_as_the_key_loads(acme, globex) -> None:
    plaintext = generate_key()
    make_key(acme, plaintext)
    other = make_key(acme, generate_key(), name="other")
    guardrail_policy_put(account=acme, actor=ACTOR, key=None, spec={"pii": {"types": ["email"]},
                                                                    "system_prompt": {"text": "A"}})
    guardrail_policy_put(account=acme, actor=ACTOR, key=other, spec={"system_prompt": {"text": "B"}})
    GuardrailPolicy.objects.create(account=globex, key=None, spec={"system_prompt": {"text": "not acme's"}})
    entry = load_key(hash_key(plaintext))
    assert entry is not None and entry.guardrails is not None
    assert entry.guardrails.system_prompt is not None and entry.guardrails.system_prompt.text == "A"
    assert entry.guardrails.new_session().scan_input("to jane@example.com") != "to jane@example.com"
    merged = key_guardrails_load(account_id=acme.pk, key_id=other.pk)
    assert merged is not None and merged.system_prompt is not None and merged.system_prompt.text == "B"
    assert merged.new_session().scan_input("to jane@example.com") != "to jane@example.com"  # the default's pii


def test_a_stored_spec_that_no_longer_compiles_refuses_every_call(acme) -> None:
    key = make_key(acme, generate_key())
    GuardrailPolicy.objects.create(account=acme, key=key, spec={"rules": [{"id": "Bad Id", "kind": "regex"}]})
    policy = key_guardrails_load(account_id=acme.pk, key_id=key.pk)
    assert policy is not None
    with pytest.raises(GuardrailBlocked) as blocked:
        policy.new_session().scan_input("anything")
    assert blocked.value.rule_id == "policy-invalid"


def test_every_write_moves_the_configuration_version(acme, django_capture_on_commit_callbacks) -> None:
    redis = sync_redis()
    before = int(redis.get(CONFIG_VERSION_KEY) or 0)
    with django_capture_on_commit_callbacks(execute=True):
        guardrail_policy_put(account=acme, actor=ACTOR, key=None, spec={"pii": {"types": ["card"]}})
    middle = int(redis.get(CONFIG_VERSION_KEY) or 0)
    with django_capture_on_commit_callbacks(execute=True):
        assert guardrail_policy_delete(account=acme, actor=ACTOR, key=None)
    assert before < middle < int(redis.get(CONFIG_VERSION_KEY) or 0)


def test_a_key_of_another_account_is_refused(acme, globex) -> None:
    theirs = make_key(globex, generate_key())
    with pytest.raises(ValueError, match="not in account"):
        guardrail_policy_put(account=acme, actor=ACTOR, key=theirs, spec={"pii": {"types": ["card"]}})

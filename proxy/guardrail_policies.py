"""The Django side of guardrail policies: read, write (audited) and load for the proxy's directory.

A policy is an account's default (no key) or a key's own; the proxy applies the default merged with the key's
own, field by field (proxy/guardrails/policy.py `merge_specs`). It is compiled once, when the directory loads
the key, and dropped with the key whenever the configuration version moves (proxy/signals.py follows the
model).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import Http404

from tokonomics.audit import Actor, audit_record

from .guardrails.policy import compile_policy, merge_specs, policy_problems
from .models import ApiKey, GuardrailPolicy

if TYPE_CHECKING:
    from billing.models import Account

    from .guardrails.policy import CompiledPolicy

log = logging.getLogger(__name__)

# What a stored spec that no longer compiles (written under older rules) becomes: every call with text is
# refused, by a rule id that says why. Guardrails fail closed: a policy meant to mask must never let text pass.
UNUSABLE_POLICY: dict[str, Any] = {
    "rules": [{"id": "policy-invalid", "kind": "regex", "pattern": r"[\s\S]", "scope": "input", "action": "block"}],
}


def key_guardrails_load(*, account_id: int, key_id: int) -> CompiledPolicy | None:
    """The key's effective policy, compiled; None when neither the account nor the key has one. Sync: the
    directory runs it off the event loop as it loads the key."""
    specs: dict[int | None, Any] = dict(GuardrailPolicy.objects.filter(
        Q(key_id__isnull=True) | Q(key_id=key_id), account_id=account_id).values_list("key_id", "spec"))
    if not specs:
        return None
    effective = merge_specs(specs.get(None), specs.get(key_id))
    if effective is None:
        return None
    try:
        return compile_policy(effective)
    except ValueError:
        log.error("the guardrail policy of key %s (account %s) does not compile: its calls are refused",
                  key_id, account_id)
        return compile_policy(UNUSABLE_POLICY)


def guardrail_policy_list(*, account: Account) -> list[GuardrailPolicy]:
    """The account's policies: the default first, then the keys' by name."""
    policies = list(GuardrailPolicy.objects.filter(account=account).select_related("key"))
    return sorted(policies, key=lambda p: (p.key is not None, p.key.name if p.key is not None else ""))


def guardrail_policy_get(*, account: Account, key: ApiKey | None) -> GuardrailPolicy | None:
    """The account's default (`key` None) or the key's own policy; None when there is none."""
    if key is not None and key.account_id != account.pk:
        raise Http404("No such key in this account.")
    found: GuardrailPolicy | None = GuardrailPolicy.objects.filter(account=account, key=key).select_related(
        "key").first()
    return found


def guardrail_effective_spec(*, account: Account, key: ApiKey) -> dict[str, Any] | None:
    """What the proxy applies to the key's calls (the page shows it beside the key's own)."""
    default = guardrail_policy_get(account=account, key=None)
    own = guardrail_policy_get(account=account, key=key)
    return merge_specs(default.spec if default else None, own.spec if own else None)


def spec_validate(spec: object) -> dict[str, Any]:
    """The spec, or a ValidationError listing every problem (the engine's own messages, "field: problem")."""
    if not isinstance(spec, Mapping):
        raise ValidationError({"spec": ["the policy is a JSON object"]})
    problems = policy_problems(spec)
    if problems:
        raise ValidationError({"spec": problems})
    return dict(spec)


def guardrail_policy_put(*, account: Account, actor: Actor, key: ApiKey | None, spec: object) -> GuardrailPolicy:
    """Create or replace the account's default (`key` None) or a key's own policy. Audited; the proxy applies
    it within a second (the model's save moves the configuration version)."""
    if key is not None and key.account_id != account.pk:
        raise ValueError(f"{key!r} is not in account {account.slug!r}")
    clean = spec_validate(spec)
    with transaction.atomic():
        policy = GuardrailPolicy.objects.select_for_update().filter(account=account, key=key).first()
        before = dict(policy.spec) if policy is not None else None
        if policy is None:
            policy = GuardrailPolicy(account=account, key=key)
        policy.spec = clean
        policy.save()
        audit_record(account=account, actor=actor, action="guardrails.created" if before is None
                     else "guardrails.updated", target=policy.target,
                     before={"spec": before} if before is not None else None, after={"spec": clean})
    return policy


def guardrail_policy_delete(*, account: Account, actor: Actor, key: ApiKey | None) -> bool:
    """Remove the default or a key's own policy; False when there was none (nothing is logged)."""
    with transaction.atomic():
        policy = GuardrailPolicy.objects.select_for_update().filter(account=account, key=key).first()
        if policy is None:
            return False
        audit_record(account=account, actor=actor, action="guardrails.deleted", target=policy.target,
                     before={"spec": policy.spec})
        policy.delete()
    return True

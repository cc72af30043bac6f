"""Guardrails store nothing (CONTRACT §4): a canary in a masked, blocked or warned prompt, in a masked answer, or
in a text tried on the policy page appears nowhere Tokonomics keeps or writes — database, Redis (the usage
streams included), logs, /metrics, the spool — while the hits are recorded, by rule id and count."""

from __future__ import annotations

import logging
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from django.conf import settings

from billing.models import AuditEntry, UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.guardrail_policies import guardrail_policy_put
from proxy.models import GuardrailPolicy
from tokonomics.audit import Actor

from ..support import KEY, ApiClient, token_for
from .test_privacy import database_text, redis_text

CANARY_EMAIL = "canary-7f3a9c@never-store.example"
CANARY_WORD = "canaryword7f3a9c"
CANARY_WARN = "canarywarn7f3a9c"
CANARY_CARD = "4111 1111 1111 1111"
POLICY = {
    "pii": {"types": ["email", "card"], "action": "mask"},
    "rules": [
        {"id": "canary-block", "kind": "keywords", "keywords": [CANARY_WORD], "scope": "input", "action": "block"},
        {"id": "canary-warn", "kind": "keywords", "keywords": [CANARY_WARN], "scope": "input", "action": "warn"},
        {"id": "card-out", "kind": "pii", "pii_types": ["card"], "scope": "output", "action": "mask"},
    ],
}


def spool_text() -> str:
    root = Path(settings.TOKONOMICS_SPOOL_DIR)
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()) if root.exists() else ""


@pytest.mark.usefixtures("transactional_db")
def test_guardrail_canaries_reach_no_store(stack, caplog, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    guardrail_policy_put(account=stack.account, actor=Actor.of_system("tests"), key=stack.key, spec=POLICY)
    oai = openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY, max_retries=0)
    claude = anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)

    masked = f"Forward this to {CANARY_EMAIL} please."
    oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": masked}])
    for _ in oai.chat.completions.create(model="gpt-4o-mini", stream=True,
                                         messages=[{"role": "user", "content": masked}]):
        pass
    claude.messages.create(model="claude-sonnet-4-5", max_tokens=32, system=masked,
                           messages=[{"role": "user", "content": masked}])
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"say {CANARY_WORD}"}])
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=32, stream=True,
                               messages=[{"role": "user", "content": f"say {CANARY_WORD}"}])
    warned = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"about {CANARY_WARN}"}])
    assert warned.headers["x-tokonomics-guardrail"] == "canary-warn"
    answer = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "card?"}],
        extra_headers={"X-Sim-Reply": f"Your card is {CANARY_CARD}, noted."}) if c.choices)
    assert CANARY_CARD not in answer
    tried = ApiClient(token_for(stack.account)).post("guardrails/try", {"text": f"{CANARY_EMAIL} {CANARY_WORD}",
                                                                        "key_id": stack.key.pk})
    assert tried.status_code == 200 and tried.json()["blocked_by"] == "canary-block"

    upstream = repr(stack.sim_requests())
    assert CANARY_EMAIL not in upstream and CANARY_WORD not in upstream  # masked, or never sent
    before_ingest = redis_text()
    usage_ingest(max_seconds=1)
    records = UsageRecord.objects.filter(account=stack.account)
    assert records.count() == 7
    assert sum(len(r.guardrail_hits) for r in records) >= 6  # the hits are kept: as rule ids and counts
    # The keywords are the policy's own (an admin's configuration, and its audit entries): the prompts' copies
    # are what must be nowhere, so the policy rows leave the dump.
    AuditEntry.objects.filter(action__startswith="guardrails.").delete()
    GuardrailPolicy.objects.all().delete()
    stores = {
        "redis (events queued)": before_ingest,
        "redis": redis_text(),
        "database": database_text(),
        "logs": "\n".join(r.getMessage() + repr(getattr(r, "__dict__", {})) for r in caplog.records
                          if not r.name.startswith(("openai", "anthropic", "httpx", "httpcore"))),
        "stdout/stderr": "".join(capfd.readouterr()),
        "metrics": httpx.get(f"{stack.proxy}/metrics").text,
        "spool": spool_text(),
    }
    assert 'tokonomics_guardrail_hits_total{action="mask",rule="pii-email"}' in stores["metrics"]
    assert 'tokonomics_guardrail_hits_total{action="block",rule="canary-block"}' in stores["metrics"]
    for where, text in stores.items():
        for secret in (CANARY_EMAIL, CANARY_WORD, CANARY_WARN, CANARY_CARD, "never-store.example"):
            assert secret not in text, f"{secret!r} found in {where}"

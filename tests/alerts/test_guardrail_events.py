"""`guardrail.violation`: calls whose guardrails matched become one signed webhook event per key per minute,
naming rule ids, actions and counts, never the text; only channels subscribed to the type receive it."""

from __future__ import annotations

import httpx

from alerts.models import AlertEvent
from billing.models import UsageRecord
from proxy.guardrail_policies import guardrail_policy_put
from tokonomics.audit import Actor

from ..support import KEY
from .conftest import WebhookReceiver, webhook_channel
from .test_more_events import _ingest_until, _signed_and_well_formed, _subscribed

SECRET_WORD = "zanzibar-7731"


def test_guardrail_hits_give_one_violation_event_per_key_and_minute(stack, receiver) -> None:
    guardrail_policy_put(account=stack.account, actor=Actor.of_system("tests"), key=stack.key, spec={
        "pii": {"types": ["email"], "action": "mask"},
        "rules": [{"id": "codename", "kind": "keywords", "keywords": [SECRET_WORD], "scope": "input",
                   "action": "block"}]})
    _subscribed(stack.account, receiver, "guardrail.violation")
    url = f"{stack.proxy}/proxy/openai/chat/completions"
    with WebhookReceiver(secret=receiver.secret) as unsubscribed:
        webhook_channel(stack.account, unsubscribed, name="budgets-only")
        blocked = httpx.post(url, headers={"Authorization": f"Bearer {KEY}"}, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{SECRET_WORD} to a@b.example"}]})
        assert blocked.status_code == 400
        masked = httpx.post(url, headers={"Authorization": f"Bearer {KEY}"}, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "write to jane@corp.example"}]})
        assert masked.status_code == 200
        _ingest_until(lambda: UsageRecord.objects.exclude(guardrail_hits=[]).count() == 2)
        [payload] = _signed_and_well_formed(receiver, 1)
        assert unsubscribed.deliveries == []
    assert payload["type"] == "guardrail.violation"
    data = payload["data"]
    assert data["key"] == {"id": stack.key.pk, "name": stack.key.name, "prefix": stack.key.prefix}
    assert data["request_id"] == blocked.headers["x-tokonomics-request-id"]
    assert data["blocked"] is True and data["status_code"] == 400 and data["window_seconds"] == 60
    assert {"rule": "codename", "action": "block", "count": 1} in data["rules"]
    text = repr(payload)
    assert SECRET_WORD not in text and "a@b.example" not in text and "jane@corp.example" not in text
    assert AlertEvent.objects.filter(type="guardrail.violation").count() == 1

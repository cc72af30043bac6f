"""What the proxy answers itself (CONTRACT §1): every refusal carries X-Tokonomics-Cost-USD of zero, and a
refused call is recorded with zero cost, not an unknown one."""

from __future__ import annotations

from decimal import Decimal

import httpx

from billing.models import Budget, UsageRecord
from billing.usage.ledger import usage_ingest

from ..support import KEY, OTHER_KEY, Stack, make_key, proxy_config_seen

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
ZERO = "0.000000000"


def test_every_refusal_carries_a_zero_cost_and_is_recorded_at_zero(stack: Stack, settings) -> None:
    make_key(stack.account, OTHER_KEY, name="mini-only", allowed_models=["gpt-4o-mini"])
    Budget.objects.create(account=stack.account, scope="feature", match="capped", period="month",
                          limit_usd=Decimal("0.000000001"), hard=True)
    proxy_config_seen()  # the proxy picks up the new key and budget
    stack.clear_sim()
    auth = {"Authorization": f"Bearer {KEY}"}
    url = f"{stack.proxy}/proxy/openai/chat/completions"
    settings.TOKONOMICS_MAX_BODY_BYTES = 10_000
    refused = {
        "unmetered_route": httpx.post(f"{stack.proxy}/proxy/openai/files", content=b"x", headers=auth),
        "model_not_allowed": httpx.post(url, json={**CHAT, "model": "gpt-4o"},
                                        headers={"Authorization": f"Bearer {OTHER_KEY}"}),
        "unknown_provider": httpx.post(f"{stack.proxy}/proxy/nowhere/chat/completions", json=CHAT, headers=auth),
        "invalid_json": httpx.post(url, content=b"{not json", headers=auth),
        "request_too_large": httpx.post(url, content=b"x" * 20_000, headers=auth),
        "invalid_path": httpx.post(f"{stack.proxy}/proxy/openai/chat%2Fcompletions", json=CHAT, headers=auth),
        "feature_budget": httpx.post(url, json=CHAT, headers={**auth, "X-Feature-Name": "capped"}),
        "unauthenticated": httpx.post(url, json=CHAT, headers={"Authorization": "Bearer mk_" + "z" * 40}),
    }
    for reason, response in refused.items():
        assert response.status_code >= 400, reason
        assert response.headers.get("x-tokonomics-cost-usd") == ZERO, reason
    assert stack.sim_requests() == []
    usage_ingest(max_seconds=1)
    records = {r.request_id: r for r in UsageRecord.objects.all()}
    for reason, response in refused.items():
        if reason == "unauthenticated":
            continue  # no account to record it in
        saved = records[response.headers["x-tokonomics-request-id"]]
        assert saved.cost_usd == Decimal(0), reason
        assert saved.status_code == response.status_code, reason


def test_unreachable_upstream_is_recorded_at_zero(stack: Stack) -> None:
    from proxy.models import ProviderEndpoint
    from proxy.services import config_version_bump

    ProviderEndpoint.objects.filter(slug="vllm-internal").update(base_url="http://127.0.0.1:9/v1")
    config_version_bump()
    proxy_config_seen()
    response = httpx.post(f"{stack.proxy}/proxy/vllm-internal/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 502
    assert response.headers["x-tokonomics-cost-usd"] == ZERO
    usage_ingest(max_seconds=1)
    saved = UsageRecord.objects.get(request_id=response.headers["x-tokonomics-request-id"])
    assert saved.cost_usd == Decimal(0)


def test_a_json_answer_cut_mid_body_is_a_502_recorded_at_zero(stack: Stack) -> None:
    response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {KEY}", "X-Sim-Drop-Body-After": "20"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_cut_short"
    assert response.headers["x-tokonomics-cost-usd"] == ZERO
    usage_ingest(max_seconds=1)
    saved = UsageRecord.objects.get(request_id=response.headers["x-tokonomics-request-id"])
    assert (saved.status_code, saved.cost_usd) == (502, Decimal(0))


def test_a_free_model_listing_says_and_records_zero_cost(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    listed = httpx.get(f"{stack.proxy}/proxy/openai/models", headers=auth)
    assert listed.status_code == 200
    assert listed.headers.get("x-tokonomics-cost-usd") == ZERO
    usage_ingest(max_seconds=1)
    saved = UsageRecord.objects.get(request_id=listed.headers["x-tokonomics-request-id"])
    assert (saved.operation, saved.cost_usd) == ("models", Decimal(0))

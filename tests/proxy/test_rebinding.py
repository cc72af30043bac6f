"""DNS rebinding with private URLs off: an endpoint whose name answered with a public address when it was
saved and answers 127.0.0.1 when the proxy connects gets a 502 in the provider's format, and the address
behind it is never reached."""

from __future__ import annotations

import httpx
import pytest
from django.test import override_settings

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.models import ProviderEndpoint
from proxy.services import provider_endpoint_create
from tokonomics.audit import Actor

from ..rebinding_dns import REBINDING_HOST, RebindingResolver, rebinding_dns
from ..support import KEY, ProxyProcess, RunserverProcess, ServerThread, make_account, make_key

OPERATOR = Actor.of_system("test")

__all__ = ["rebinding_dns"]

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8}


@pytest.fixture
def private_urls_off(settings):
    settings.TOKONOMICS_ALLOW_PRIVATE_URLS = False


def _sim_requests(sim: str) -> list:
    return httpx.get(f"{sim}/_sim/requests").json()


def test_rebinding_name_is_refused_at_connect_time(
    transactional_db, simulator, plans, private_urls_off, rebinding_dns: RebindingResolver
) -> None:
    account = make_account("acme", simulator, plans["pro"])
    make_key(account, KEY)
    port = simulator.rsplit(":", 1)[1]
    provider_endpoint_create(account=account, actor=OPERATOR, slug="rebound", wire_format="openai",
                             base_url=f"http://{REBINDING_HOST}:{port}/v1", credential="sk-upstream-secret")
    provider_endpoint_create(account=account, actor=OPERATOR, slug="rebound-claude", wire_format="anthropic",
                             base_url=f"http://claude.{REBINDING_HOST}:{port}", credential="sk-upstream-secret")
    assert rebinding_dns.answers[REBINDING_HOST] == ["93.184.215.14"]  # saved: the name was public then

    with ServerThread() as proxy:
        response = httpx.post(f"{proxy.url}/proxy/rebound/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        claude = httpx.post(f"{proxy.url}/proxy/rebound-claude/v1/messages", json=CHAT,
                            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}, timeout=10)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_address_blocked"
    assert "127.0.0.1" in response.json()["error"]["message"]
    assert claude.status_code == 502
    assert claude.json()["type"] == "error" and claude.json()["error"]["type"] == "api_error"
    assert rebinding_dns.answers[REBINDING_HOST][1:] == ["127.0.0.1"]
    assert _sim_requests(simulator) == []  # the upstream was never reached
    usage_ingest(max_seconds=1)
    record = UsageRecord.objects.get(request_id=response.headers["x-tokonomics-request-id"])
    assert record.status_code == 502 and record.cost_usd in (None, 0)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "127.1", "0x7f000001"])
def test_private_address_literals_saved_while_allowed_are_refused_once_turned_off(
    transactional_db, simulator, plans, settings, host: str
) -> None:
    account = make_account("acme", simulator, plans["pro"])
    make_key(account, KEY)
    port = simulator.rsplit(":", 1)[1]
    ProviderEndpoint.objects.filter(account=account, slug="openai").update(base_url=f"http://{host}:{port}/v1")
    settings.TOKONOMICS_ALLOW_PRIVATE_URLS = False

    with ServerThread() as proxy:
        response = httpx.post(f"{proxy.url}/proxy/openai/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=10)

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_address_blocked"
    assert _sim_requests(simulator) == []


@override_settings(TOKONOMICS_ALLOW_PRIVATE_URLS=True)
def test_private_upstreams_work_when_allowed(stack) -> None:
    response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize("server", [ProxyProcess, RunserverProcess], ids=["uvicorn", "daphne"])
def test_the_setting_from_the_environment_refuses_private_upstreams(
    transactional_db, simulator, plans, server
) -> None:
    account = make_account("acme", simulator, plans["pro"])  # endpoints on 127.0.0.1, saved while allowed
    make_key(account, KEY)
    with server("tokonomics.asgi:application", TOKONOMICS_ALLOW_PRIVATE_URLS="0", SECURE_SSL_REDIRECT="0") as process:
        response = httpx.post(f"{process.url}/proxy/openai/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_address_blocked"
    assert _sim_requests(simulator) == []

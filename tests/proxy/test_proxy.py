"""The proxy end to end: the official SDKs → live proxy (uvicorn) → simulator, over real HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest

from ..support import KEY, Stack, proxy_config_seen

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sse"


def record(request_id: str) -> UsageRecord:
    usage_ingest(max_seconds=1)
    return UsageRecord.objects.get(request_id=request_id)


def openai_client(stack: Stack, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY, max_retries=0, **kwargs)


def anthropic_client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hi"}]}


# --- transparency -----------------------------------------------------------------------------

FIXTURE_CALLS = [
    ("openai", "/v1/chat/completions", "openai_chat_reasoning_cached.json", "o4-mini", False),
    ("openai", "/v1/chat/completions", "openai_chat_stream_reasoning_cached.sse", "o4-mini", True),
    ("openai", "/v1/chat/completions", "openai_chat_stream_usage_on_last_choice.sse", "gpt-4o-mini", True),
    ("openai", "/v1/responses", "openai_responses.json", "gpt-4o-mini", False),
    ("openai", "/v1/responses", "openai_responses_stream.sse", "gpt-4o-mini", True),
    ("openai", "/v1/embeddings", "openai_embeddings.json", "text-embedding-3-small", False),
    ("anthropic", "/v1/messages", "anthropic_messages_cache.json", "claude-sonnet-4-5", False),
    ("anthropic", "/v1/messages", "anthropic_messages_stream_cache.sse", "claude-sonnet-4-5", True),
    ("anthropic", "/v1/messages", "anthropic_messages_stream_restated.sse", "claude-sonnet-4-5", True),
]


def _fixture_body(path: str, model: str, stream: bool) -> dict:
    if path.endswith("embeddings"):
        return {"model": model, "input": "hello"}
    if path.endswith("responses"):
        return {"model": model, "input": "hello", "stream": stream}
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hello"}], "stream": stream}
    if stream and path.endswith("chat/completions"):
        body["stream_options"] = {"include_usage": True}  # asked for by the client: nothing to strip
    return body


@pytest.mark.parametrize(("provider", "path", "fixture", "model", "stream"), FIXTURE_CALLS,
                         ids=[c[2] for c in FIXTURE_CALLS])
def test_response_bytes_identical_to_a_direct_call(stack, provider, path, fixture, model, stream) -> None:
    body = _fixture_body(path, model, stream)
    headers = {"X-Sim-Fixture": fixture, "anthropic-version": "2023-06-01"}
    direct_base = f"{stack.sim}" if provider == "anthropic" else stack.sim
    direct = httpx.post(f"{direct_base}{path}", json=body, headers={**headers, "Authorization": "Bearer sk-x",
                                                                    "x-api-key": "sk-x"})
    proxy_path = path if provider == "anthropic" else path.removeprefix("/v1")
    proxied = httpx.post(f"{stack.proxy}/proxy/{provider}{proxy_path}", json=body,
                         headers={**headers, "Authorization": f"Bearer {KEY}"})
    assert proxied.status_code == direct.status_code == 200
    assert proxied.content == direct.content == (FIXTURES / fixture).read_bytes()
    assert proxied.headers["content-type"] == direct.headers["content-type"]
    assert proxied.headers["x-tokonomics-request-id"].startswith("req_")
    if not stream:
        assert Decimal(proxied.headers["x-tokonomics-cost-usd"]) > 0
        assert float(proxied.headers["x-tokonomics-overhead-ms"]) >= 0


# --- usage and cost, streamed equals non-streamed ---------------------------------------------

PAIRS = [
    ("openai", "/chat/completions", "openai_chat_reasoning_cached.json", "openai_chat_stream_reasoning_cached.sse",
     "o4-mini", dict(input_tokens=1420, output_tokens=340, cached_input_tokens=1280, reasoning_tokens=320)),
    ("openai", "/chat/completions", "openai_chat_usage_on_last_choice.json",
     "openai_chat_stream_usage_on_last_choice.sse", "gpt-4o-mini", None),
    ("openai", "/responses", "openai_responses.json", "openai_responses_stream.sse", "gpt-4o-mini", None),
    ("anthropic", "/v1/messages", "anthropic_messages_cache.json", "anthropic_messages_stream_cache.sse",
     "claude-sonnet-4-5", dict(input_tokens=15 + 3072 + 12000, cached_input_tokens=12000, cache_write_tokens=3072)),
    ("anthropic", "/v1/messages", "anthropic_messages_restated.json", "anthropic_messages_stream_restated.sse",
     "claude-sonnet-4-5", None),
    ("anthropic", "/v1/messages", "anthropic_messages.json", "anthropic_messages_stream.sse",
     "claude-sonnet-4-5", None),
]


@pytest.mark.parametrize(("provider", "path", "plain", "streamed", "model", "expected"), PAIRS,
                         ids=[p[3] for p in PAIRS])
def test_streamed_cost_equals_non_streamed_cost(stack, provider, path, plain, streamed, model, expected) -> None:
    ids = []
    for fixture, stream in ((plain, False), (streamed, True)):
        body = _fixture_body(path, model, stream)
        response = httpx.post(f"{stack.proxy}/proxy/{provider}{path}", json=body,
                              headers={"X-Sim-Fixture": fixture, "Authorization": f"Bearer {KEY}",
                                       "anthropic-version": "2023-06-01"})
        assert response.status_code == 200
        ids.append(response.headers["x-tokonomics-request-id"])
    first, second = record(ids[0]), record(ids[1])
    fields = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
    assert [getattr(first, f) for f in fields] == [getattr(second, f) for f in fields]
    assert first.cost_usd == second.cost_usd and first.cost_usd > 0
    assert (first.streamed, second.streamed) == (False, True)
    assert first.usage_source == second.usage_source == "reported"
    assert first.served_model and first.served_model == second.served_model
    for name, value in (expected or {}).items():
        assert getattr(first, name) == value, name


def test_cost_header_matches_record(stack) -> None:
    response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {KEY}"})
    saved = record(response.headers["x-tokonomics-request-id"])
    assert Decimal(response.headers["x-tokonomics-cost-usd"]) == saved.cost_usd
    assert saved.model == "gpt-4o-mini" and saved.status_code == 200 and saved.provider == "openai"


# --- the official SDKs ------------------------------------------------------------------------

def test_openai_sdk_sync_stream_and_include_usage_injection(stack) -> None:
    client = openai_client(stack)
    completion = client.chat.completions.create(**CHAT)
    assert completion.choices[0].message.content
    raw = client.chat.completions.with_raw_response.create(**CHAT, stream=True)
    chunks = list(raw.parse())
    # The client did not ask for usage, so it sees no usage chunk, though the proxy asked upstream for one.
    assert chunks and all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    upstream = stack.sim_requests()[-1]
    assert upstream["body"]["stream_options"] == {"include_usage": True}
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert saved.usage_source == "reported" and saved.output_tokens > 0 and saved.streamed


def test_openai_sdk_async_and_responses_and_embeddings(stack) -> None:
    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY, max_retries=0)
        completion = await client.chat.completions.create(**CHAT)
        assert completion.usage.prompt_tokens > 0
        stream = await client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
        usage = [c.usage async for c in stream if c.usage is not None]
        assert len(usage) == 1  # asked for by the client: passed through
        response = await client.responses.create(model="gpt-4o-mini", input="hello")
        assert response.usage.input_tokens > 0
        embedding = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        assert len(embedding.data) == 2
        await client.close()

    asyncio.run(run())


def test_anthropic_sdk_sync_async_stream(stack) -> None:
    client = anthropic_client(stack)
    message = client.messages.create(**MESSAGES, extra_headers={"X-Sim-Cached-Tokens": "100",
                                                                "X-Sim-Cache-Write-Tokens": "50"})
    assert message.usage.cache_read_input_tokens == 100
    with client.messages.stream(**MESSAGES) as stream:
        text = "".join(stream.text_stream)
    assert text

    async def run() -> None:
        async_client = anthropic.AsyncAnthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key=KEY,
                                                max_retries=0)
        reply = await async_client.messages.create(**MESSAGES)
        assert reply.usage.output_tokens > 0
        await async_client.close()

    asyncio.run(run())
    usage_ingest(max_seconds=1)
    cached = UsageRecord.objects.get(cached_input_tokens=100)
    assert cached.cache_write_tokens == 50
    assert cached.input_tokens == message.usage.input_tokens + 150


def test_anthropic_sdk_with_bearer_and_x_api_key(stack) -> None:
    bearer = anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", auth_token=KEY, max_retries=0)
    assert bearer.messages.create(**MESSAGES).content


# --- streaming is not buffered ----------------------------------------------------------------

def test_first_chunk_arrives_while_upstream_holds_the_second(stack) -> None:
    body = {**CHAT, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}", "X-Sim-Hold": "t1"}
    with httpx.stream("POST", f"{stack.proxy}/proxy/openai/chat/completions", json=body, headers=headers,
                      timeout=10) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert '"chat.completion.chunk"' in first
        # Only now let the simulator send the rest.
        httpx.post(f"{stack.sim}/_sim/release/t1")
        rest = [line for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"


# --- what the upstream sees -------------------------------------------------------------------

def test_credential_swap_and_header_stripping(stack) -> None:
    stack.clear_sim()
    httpx.post(
        f"{stack.proxy}/proxy/openai/chat/completions?api-version=2024-01", json=CHAT,
        headers={"Authorization": f"Bearer {KEY}", "X-Feature-Name": "support-bot", "X-Tenant-ID": "globex",
                 "X-Environment": "staging", "X-Tokonomics-Tags": "intent=summarize, project=claims",
                 "OpenAI-Organization": "org-123", "X-Tokonomics-Session": "run-\t7",
                 "X-Tokonomics-Session-Name": "fix flaky test", "X-Tokonomics-Session-Git": "x" * 500},
    )
    seen = stack.sim_requests()[-1]
    headers = seen["headers"]
    assert headers["authorization"] == "Bearer sk-upstream-openai-acme"
    assert KEY not in str(seen)
    for name in ("x-feature-name", "x-tenant-id", "x-environment", "x-tokonomics-tags", "x-api-key",
                 "x-tokonomics-session", "x-tokonomics-session-name", "x-tokonomics-session-git"):
        assert name not in headers
    assert headers["openai-organization"] == "org-123"
    assert seen["path"] == "/v1/chat/completions" and seen["query"] == "api-version=2024-01"
    saved = UsageRecord.objects.none()
    usage_ingest(max_seconds=1)
    saved = UsageRecord.objects.get(feature="support-bot")
    assert (saved.tenant, saved.environment) == ("globex", "staging")
    assert saved.tags == {"intent": "summarize", "project": "claims"}
    # bounded and cleaned like the tenant: the control character gone, the git context cut to its column
    assert (saved.session, saved.session_name, saved.session_git) == ("run-7", "fix flaky test", "x" * 300)

    stack.clear_sim()
    anthropic_client(stack).messages.create(**MESSAGES)
    seen = stack.sim_requests()[-1]["headers"]
    assert seen["x-api-key"] == "sk-upstream-anthropic-acme"
    assert "authorization" not in seen


def test_environment_defaults_to_the_keys(stack) -> None:
    stack.key.environment = "ci"
    stack.key.save()
    proxy_config_seen()
    response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {KEY}"})
    assert record(response.headers["x-tokonomics-request-id"]).environment == "ci"


# --- errors and denials -----------------------------------------------------------------------

def test_upstream_errors_pass_through_unchanged(stack) -> None:
    client = openai_client(stack)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**CHAT, extra_headers={"X-Sim-Status": "500"})
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(stack).messages.create(**MESSAGES, extra_headers={"X-Sim-Status": "400"})
    direct = httpx.post(f"{stack.sim}/v1/chat/completions", json=CHAT,
                        headers={"X-Sim-Status": "429", "Authorization": "Bearer x"})
    proxied = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                         headers={"X-Sim-Status": "429", "Authorization": f"Bearer {KEY}"})
    assert proxied.status_code == 429 and proxied.content == direct.content
    saved = record(proxied.headers["x-tokonomics-request-id"])
    assert saved.status_code == 429 and saved.input_tokens == 0


def test_bad_requests_get_the_contract_error_and_never_reach_upstream(stack, settings) -> None:
    stack.clear_sim()
    auth = {"Authorization": f"Bearer {KEY}"}
    url = f"{stack.proxy}/proxy/openai/chat/completions"

    bad_json = httpx.post(url, content=b"{not json", headers=auth)
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"

    settings.TOKONOMICS_MAX_BODY_BYTES = 1000
    too_big = httpx.post(url, content=b"x" * 2000, headers=auth)
    assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "invalid_request_error"

    unknown = httpx.post(f"{stack.proxy}/proxy/nowhere/chat/completions", json=CHAT, headers=auth)
    assert unknown.status_code == 403 and unknown.json()["error"]["type"] == "permission_error"

    for headers in ({"Authorization": "Bearer mk_" + "x" * 40}, {"Authorization": "Bearer sk-not-ours"}, {}):
        denied = httpx.post(url, json=CHAT, headers=headers)
        assert denied.status_code == 401
        assert denied.json()["error"]["type"] == "authentication_error"
        assert denied.headers["x-tokonomics-request-id"]

    anthropic_bad = httpx.post(f"{stack.proxy}/proxy/anthropic/v1/messages", content=b"[]",
                               headers={"x-api-key": KEY})
    assert anthropic_bad.status_code == 400
    assert anthropic_bad.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                               "message": anthropic_bad.json()["error"]["message"]}}

    unmetered = httpx.post(f"{stack.proxy}/proxy/openai/files", content=b"x", headers=auth)
    assert unmetered.status_code == 403 and unmetered.json()["error"]["code"] == "unmetered_route"

    assert stack.sim_requests() == []
    usage_ingest(max_seconds=1)
    statuses = sorted(UsageRecord.objects.values_list("status_code", flat=True))
    assert statuses == [400, 400, 403, 403, 413]  # unauthenticated calls have no account to be recorded in


def test_sdks_raise_their_usual_exceptions_on_denials(stack) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key="mk_" + "y" * 40,
                      max_retries=0).chat.completions.create(**CHAT)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key="mk_" + "y" * 40,
                            max_retries=0).messages.create(**MESSAGES)


def test_unreachable_upstream_is_502_and_recorded(stack) -> None:
    from proxy.models import ProviderEndpoint

    ProviderEndpoint.objects.filter(slug="vllm-internal").update(base_url="http://127.0.0.1:9/v1")
    from proxy.services import config_version_bump

    config_version_bump()
    proxy_config_seen()
    client = openai.OpenAI(base_url=f"{stack.proxy}/proxy/vllm-internal", api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    saved = record(caught.value.response.headers["x-tokonomics-request-id"])
    assert saved.status_code == 502 and saved.cost_usd in (None, 0)


def test_upstream_timeout_is_504(stack, settings) -> None:
    from proxy.context import _context

    assert _context is not None
    _context.http._timeout = _context.http._timeout.__class__(total=None, connect=5, sock_read=0.3)
    response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {KEY}", "X-Sim-Latency-Ms": "2000"}, timeout=10)
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"
    assert record(response.headers["x-tokonomics-request-id"]).status_code == 504


# --- streams cut short ------------------------------------------------------------------------

def test_client_disconnect_mid_stream_leaves_an_estimated_record(stack) -> None:
    body = {**CHAT, "stream": True, "max_tokens": 200}
    headers = {"Authorization": f"Bearer {KEY}", "X-Sim-Hold": "cut", "X-Feature-Name": "cut-short"}
    with httpx.stream("POST", f"{stack.proxy}/proxy/openai/chat/completions", json=body, headers=headers,
                      timeout=10) as response:
        next(line for line in response.iter_lines() if line.startswith("data:"))
        request_id = response.headers["x-tokonomics-request-id"]
    # The client is gone; the upstream is still holding the rest of the stream.
    release = threading.Timer(0.5, lambda: httpx.post(f"{stack.sim}/_sim/release/cut"))
    release.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        usage_ingest(max_seconds=0.2)
        saved = UsageRecord.objects.filter(request_id=request_id).first()
        if saved is not None:
            break
        time.sleep(0.1)
    assert saved is not None
    # Only the role chunk had arrived: the input estimate stands, output is what was seen (nothing).
    assert saved.usage_source == "estimated"
    assert saved.input_tokens > 0 and saved.cost_usd > 0
    release.join()  # while the simulator it calls is still up


def test_upstream_cut_short_leaves_an_estimated_record(stack) -> None:
    body = {**CHAT, "stream": True}
    with httpx.stream("POST", f"{stack.proxy}/proxy/openai/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}", "X-Sim-Drop-After": "3"}) as response:
        request_id = response.headers["x-tokonomics-request-id"]
        with pytest.raises(httpx.HTTPError):
            list(response.iter_lines())
    saved = record(request_id)
    assert saved.usage_source == "estimated" and saved.output_tokens > 0


def test_response_without_usage_is_estimated_not_zero(stack) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": False}}
    response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"})
    saved = record(response.headers["x-tokonomics-request-id"])
    assert saved.usage_source in ("reported", "estimated")
    assert saved.output_tokens > 0 and saved.input_tokens > 0


def test_unknown_model_price_is_recorded_and_never_blocks(stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.proxy}/proxy/vllm-internal", api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**{**CHAT, "model": "my-own-model-7b"})
    assert raw.headers["x-tokonomics-cost-usd"] == "unknown"
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert saved.cost_usd is None and saved.input_tokens > 0


def test_price_override_wins(stack) -> None:
    from billing.models import PriceOverride

    PriceOverride.objects.create(account=stack.account, provider="openai", model="gpt-4o-mini",
                                 input_per_mtok=Decimal("1000"), output_per_mtok=Decimal("2000"))
    proxy_config_seen()
    response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {KEY}"})
    saved = record(response.headers["x-tokonomics-request-id"])
    expected = (Decimal(saved.input_tokens) * 1000 + Decimal(saved.output_tokens) * 2000) / 1_000_000
    assert saved.cost_usd == expected


def test_revoked_key_stops_working_within_two_seconds(stack) -> None:
    from proxy.services import api_key_revoke
    from tokonomics.audit import Actor

    url = f"{stack.proxy}/proxy/openai/chat/completions"
    assert httpx.post(url, json=CHAT, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    api_key_revoke(account=stack.key.account, actor=Actor.of_system("test"), key=stack.key)
    proxy_config_seen(timeout=2)
    assert httpx.post(url, json=CHAT, headers={"Authorization": f"Bearer {KEY}"}).status_code == 401

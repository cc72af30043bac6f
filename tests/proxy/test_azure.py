"""Azure OpenAI end to end: the `openai` SDK's AzureOpenAI client → live proxy → simulator, over real HTTP.

The endpoint maps deployments to models, so a call to a deployment is priced as its model; a deployment
nobody mapped is priced as the model the response names."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import orjson
import pytest
from genai_prices import Usage, calc_price

from billing.models import Budget, UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.services import config_version_bump

from ..support import KEY, Stack, proxy_config_seen, wait_until
from .test_paths import raw_request

API_VERSION = "2024-10-21"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def record(request_id: str) -> UsageRecord:
    """The call's record, once the ledger has it (the proxy settles just after the answer has gone)."""
    stored = UsageRecord.objects.filter(request_id=request_id)
    wait_until(lambda: usage_ingest(max_seconds=1) >= 0 and stored.exists(), 10)
    return UsageRecord.objects.get(request_id=request_id)


def ingested(count: int) -> None:
    wait_until(lambda: usage_ingest(max_seconds=1) >= 0 and UsageRecord.objects.count() >= count, 10)


@pytest.fixture
def azure(stack: Stack) -> Stack:
    from proxy.models import ProviderEndpoint

    endpoint = ProviderEndpoint(account=stack.account, slug="azure", wire_format="azure-openai", base_url=stack.sim,
                                pricing_provider="azure",
                                deployments={"prod-chat": "gpt-4o-mini", "vectors": "text-embedding-3-small"})
    endpoint.set_credential("azure-upstream-key")
    endpoint.save()
    config_version_bump()
    proxy_config_seen()
    return stack


def azure_client(stack: Stack, **kwargs) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=f"{stack.proxy}/proxy/azure", api_key=KEY, api_version=API_VERSION,
                              max_retries=0, **kwargs)


def catalogue_cost(saved: UsageRecord, model: str) -> Decimal:
    usage = Usage(input_tokens=saved.input_tokens, output_tokens=saved.output_tokens,
                  cache_read_tokens=saved.cached_input_tokens or None)
    return calc_price(usage, model, provider_id="azure").total_price


def test_azure_sdk_chat_is_priced_as_the_deployments_model(azure: Stack) -> None:
    azure.clear_sim()
    raw = azure_client(azure).chat.completions.with_raw_response.create(
        model="prod-chat", messages=MESSAGES, max_tokens=16, extra_headers={"X-Sim-Cached-Tokens": "40"})
    completion = raw.parse()
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert (saved.provider, saved.model, saved.operation, saved.streamed) == ("azure", "gpt-4o-mini", "chat", False)
    assert saved.input_tokens == completion.usage.prompt_tokens and saved.cached_input_tokens == 40
    assert saved.output_tokens == completion.usage.completion_tokens > 0
    assert saved.cost_usd == catalogue_cost(saved, "gpt-4o-mini") > 0
    assert Decimal(raw.headers["x-tokonomics-cost-usd"]) == saved.cost_usd
    [upstream] = azure.sim_requests()
    assert upstream["path"] == "/openai/deployments/prod-chat/chat/completions"
    assert upstream["query"] == f"api-version={API_VERSION}"
    # The client's key never leaves the proxy; the endpoint's Azure key goes up in Azure's header.
    assert upstream["headers"]["api-key"] == "azure-upstream-key"
    assert "authorization" not in upstream["headers"] and KEY not in orjson.dumps(upstream).decode()


def test_azure_sdk_stream_is_metered_like_the_same_call_unstreamed(azure: Stack) -> None:
    client = azure_client(azure)
    plain = client.chat.completions.with_raw_response.create(model="prod-chat", messages=MESSAGES, max_tokens=16)
    raw = client.chat.completions.with_raw_response.create(model="prod-chat", messages=MESSAGES, max_tokens=16,
                                                           stream=True)
    chunks = list(raw.parse())
    # The proxy asked Azure for the usage chunk; the client, who did not, never sees it.
    assert chunks and all(chunk.usage is None for chunk in chunks)
    assert azure.sim_requests()[-1]["body"]["stream_options"] == {"include_usage": True}
    first, streamed = record(plain.headers["x-tokonomics-request-id"]), record(raw.headers["x-tokonomics-request-id"])
    assert streamed.streamed and streamed.usage_source == "reported"
    assert (streamed.input_tokens, streamed.output_tokens) == (first.input_tokens, first.output_tokens)
    assert streamed.cost_usd == first.cost_usd == catalogue_cost(first, "gpt-4o-mini")


def test_azure_embeddings_and_the_v1_routes(azure: Stack) -> None:
    azure.clear_sim()
    raw = azure_client(azure).embeddings.with_raw_response.create(model="vectors", input=["a b c", "d e"])
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert (saved.model, saved.operation, saved.output_tokens) == ("text-embedding-3-small", "embeddings", 0)
    assert saved.cost_usd == catalogue_cost(saved, "text-embedding-3-small") > 0
    # The v1 API: the deployment is the body's model, any api-version is optional.
    v1 = openai.OpenAI(base_url=f"{azure.proxy}/proxy/azure/openai/v1", api_key=KEY, max_retries=0)
    chat = v1.chat.completions.with_raw_response.create(model="prod-chat", messages=MESSAGES, max_tokens=8)
    response = v1.responses.with_raw_response.create(model="prod-chat", input="hello", max_output_tokens=8)
    for raw_response, operation in ((chat, "chat"), (response, "responses")):
        saved = record(raw_response.headers["x-tokonomics-request-id"])
        assert (saved.model, saved.operation) == ("gpt-4o-mini", operation)
        assert saved.cost_usd == catalogue_cost(saved, "gpt-4o-mini") > 0
    paths = [r["path"] for r in azure.sim_requests()]
    assert paths == ["/openai/deployments/vectors/embeddings", "/openai/v1/chat/completions", "/openai/v1/responses"]
    assert {r["headers"]["api-key"] for r in azure.sim_requests()} == {"azure-upstream-key"}


def test_an_unmapped_deployment_is_priced_as_the_model_the_response_names(azure: Stack) -> None:
    raw = azure_client(azure).chat.completions.with_raw_response.create(
        model="team-x", messages=MESSAGES, max_tokens=16, extra_headers={"X-Sim-Served-Model": "gpt-4o-2024-08-06"})
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert (saved.model, saved.served_model) == ("team-x", "gpt-4o-2024-08-06")
    assert saved.cost_usd == catalogue_cost(saved, "gpt-4o") > 0


def test_an_unmapped_unknown_deployment_is_refused_under_a_hard_budget_unless_unpriced_models_are_allowed(
        azure: Stack) -> None:
    Budget.objects.create(account=azure.account, scope="account", match="", period="month", limit_usd=Decimal("5"),
                          hard=True)
    config_version_bump()
    proxy_config_seen()
    azure.clear_sim()
    client = azure_client(azure)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="team-x", messages=MESSAGES, max_tokens=8)
    assert refused.value.code == "model_unpriced" and "team-x" in refused.value.message
    assert "map the deployment" in refused.value.message
    assert azure.sim_requests() == []
    # A deployment named after a known model is estimated as that model: admitted.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=8).choices
    azure.account.allow_unpriced_models = True
    azure.account.save()
    config_version_bump()
    proxy_config_seen()
    raw = client.chat.completions.with_raw_response.create(
        model="team-x", messages=MESSAGES, max_tokens=8, extra_headers={"X-Sim-Served-Model": "gpt-4o-mini"})
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert saved.cost_usd == catalogue_cost(saved, "gpt-4o-mini") > 0


def test_a_spent_budget_denies_azure_calls_in_openais_error_format(azure: Stack) -> None:
    Budget.objects.create(account=azure.account, scope="account", match="", period="month",
                          limit_usd=Decimal("0.000001"), hard=True)
    config_version_bump()
    proxy_config_seen()
    azure.clear_sim()
    client = azure_client(azure)
    with pytest.raises(openai.RateLimitError) as denied:
        client.chat.completions.create(model="prod-chat", messages=MESSAGES, max_tokens=64)
    assert denied.value.body["type"] == "budget_exceeded" and denied.value.code == "account_budget"
    assert denied.value.response.headers["x-tokonomics-denied-scope"] == "account_budget"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="prod-chat", messages=MESSAGES, max_tokens=64, stream=True)
    assert azure.sim_requests() == []
    ingested(2)
    assert list(UsageRecord.objects.values_list("status_code", "denied_scope", "model")) == [
        (429, "account_budget", "gpt-4o-mini")] * 2


def test_azure_model_listing_is_free_and_other_routes_are_refused(azure: Stack) -> None:
    azure.clear_sim()
    listing = httpx.get(f"{azure.proxy}/proxy/azure/openai/v1/models", headers={"api-key": KEY})
    assert listing.status_code == 200 and listing.json()["data"]
    saved = record(listing.headers["x-tokonomics-request-id"])
    assert (saved.operation, saved.cost_usd) == ("models", Decimal(0))
    for path in ("/openai/deployments/prod-chat/images/generations", "/openai/deployments/prod-chat/x/chat/completions",
                 "/openai/deployments//chat/completions", "/openai/files"):
        status, _, body = raw_request(azure.proxy, "POST", f"/proxy/azure{path}?api-version={API_VERSION}",
                                      {"api-key": KEY, "Content-Type": "application/json"}, b"{}")
        assert status in (400, 403), path
        assert orjson.loads(body)["error"]["code"] in ("unmetered_route", "invalid_path"), path
    assert [r["path"] for r in azure.sim_requests()] == ["/openai/v1/models"]


# Hostile paths on the Azure routes: each could be metered as one deployment's chat and land elsewhere.
AZURE_INVALID = [
    "/proxy/azure/openai/deployments/prod-chat%2Fchat%2Fcompletions/images/generations",
    "/proxy/azure/openai/deployments/prod-chat/chat/completions%3F/../images/generations",
    "/proxy/azure/openai/deployments/../deployments/prod-chat/chat/completions",
    "/proxy/azure/openai/deployments/%2E%2E/v1/chat/completions",
    "/proxy/azure/openai/deployments/prod-chat/./chat/completions",
    "/proxy/azure/openai/deployments/prod%5Cchat/chat/completions",
    "/proxy/azure/openai/deployments/prod-chat/chat/completions%23",
]


def test_hostile_azure_paths_get_invalid_path_and_never_reach_azure(azure: Stack) -> None:
    azure.clear_sim()
    body = orjson.dumps({"messages": MESSAGES, "max_tokens": 8})
    for target in AZURE_INVALID:
        status, _, answer = raw_request(azure.proxy, "POST", f"{target}?api-version={API_VERSION}",
                                        {"api-key": KEY, "Content-Type": "application/json"}, body)
        assert status == 400, (target, answer)
        assert orjson.loads(answer)["error"]["code"] == "invalid_path", target
    assert azure.sim_requests() == []


def test_an_encoded_deployment_name_is_one_deployment_metered_and_forwarded_alike(azure: Stack) -> None:
    azure.clear_sim()
    status, headers, answer = raw_request(
        azure.proxy, "POST", f"/proxy/azure/openai/deployments/prod%2Dchat/chat/completions?api-version={API_VERSION}",
        {"api-key": KEY, "Content-Type": "application/json"}, orjson.dumps({"messages": MESSAGES, "max_tokens": 8}))
    assert status == 200, answer
    [upstream] = azure.sim_requests()
    assert upstream["path"] == "/openai/deployments/prod-chat/chat/completions"
    assert record(headers["x-tokonomics-request-id"]).model == "gpt-4o-mini"


def test_an_api_key_header_is_ours_on_every_route_and_never_forwarded(azure: Stack) -> None:
    """AzureOpenAI sends its key in api-key; any client may. It is the caller's Tokonomics key, never sent on."""
    azure.clear_sim()
    response = httpx.post(f"{azure.proxy}/proxy/openai/chat/completions", headers={"api-key": KEY},
                          json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 4})
    assert response.status_code == 200
    [upstream] = azure.sim_requests()
    assert "api-key" not in upstream["headers"]
    assert upstream["headers"]["authorization"] == "Bearer sk-upstream-openai-acme"
    wrong = httpx.post(f"{azure.proxy}/proxy/azure/openai/v1/chat/completions", headers={"api-key": "mk_" + "z" * 40},
                       json={"model": "prod-chat", "messages": MESSAGES})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"


def test_async_azure_client_streams_and_is_metered(azure: Stack) -> None:
    import asyncio

    async def run() -> list[str]:
        client = openai.AsyncAzureOpenAI(azure_endpoint=f"{azure.proxy}/proxy/azure", api_key=KEY,
                                         api_version=API_VERSION, max_retries=0)
        stream = await client.chat.completions.create(model="prod-chat", messages=MESSAGES, max_tokens=6,
                                                      stream=True, stream_options={"include_usage": True})
        usage = [chunk.usage async for chunk in stream if chunk.usage is not None]
        assert len(usage) == 1 and usage[0].completion_tokens == 6  # asked for by the client: passed through
        await client.close()
        return []

    asyncio.run(run())
    ingested(1)
    [saved] = UsageRecord.objects.all()
    assert (saved.model, saved.streamed, saved.output_tokens) == ("gpt-4o-mini", True, 6)
    assert saved.cost_usd == catalogue_cost(saved, "gpt-4o-mini")

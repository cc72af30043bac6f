"""Gemini's native API end to end: the official google-genai SDK, with only its base URL changed, through the
live proxy to the simulator. Usage and cost are checked against genai-prices' own reading of the usage
(`extract_usage`) and its own price calculation (`calc_price`), long-context tier and thinking included."""

from __future__ import annotations

import io
import random
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from django.core.management import call_command
from genai_prices import calc_price, extract_usage
from google import genai
from google.genai import errors, types

from billing.models import Budget, UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.models import ProviderEndpoint

from ..support import KEY, SERVERS, Stack, proxy_config_seen, proxy_served_by

CREDENTIAL = "AIza-upstream-credential-of-acme"
PROMPT = "Say hello to the Gemini native API"


@pytest.fixture
def gemini(stack: Stack) -> Stack:
    endpoint = ProviderEndpoint(account=stack.account, slug="gemini-native", wire_format="gemini",
                                base_url=stack.sim, pricing_provider="google")
    endpoint.set_credential(CREDENTIAL)
    endpoint.save()
    proxy_config_seen()
    return stack


def client(base: str, *, api_key: str = KEY, **headers: str) -> genai.Client:
    options = types.HttpOptions(base_url=f"{base}/proxy/gemini-native", headers=headers or None,
                                retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=api_key, http_options=options)


def record(request_id: str) -> UsageRecord:
    deadline = time.monotonic() + 15  # generous: the machine running the tests may be busy
    while (saved := UsageRecord.objects.filter(request_id=request_id).first()) is None:
        assert time.monotonic() < deadline, "no usage record"
        usage_ingest(max_seconds=0.2)
    return saved


def catalogue_cost(usage_metadata: dict, model: str) -> Decimal:
    """What genai-prices itself makes of a Gemini answer's usageMetadata."""
    extracted = extract_usage({"usageMetadata": usage_metadata, "modelVersion": model}, provider_id="google")
    return calc_price(extracted.usage, model, provider_id="google").total_price


def request_id_of(response: object) -> str:
    return response.sdk_http_response.headers["x-tokonomics-request-id"]


def upstream_calls(stack: Stack) -> list[dict]:
    return [r for r in stack.sim_requests() if "/models" in r["path"]]


# --- usage and cost, exact to the catalogue -------------------------------------------------------

def test_generate_content_with_thinking_and_cache_is_priced_as_the_catalogue_prices_it(gemini: Stack) -> None:
    sdk = client(gemini.proxy, **{"X-Sim-Reasoning-Tokens": "40", "X-Sim-Cached-Tokens": "1000",
                                  "X-Sim-Tool-Use-Prompt-Tokens": "30", "X-Feature-Name": "greeter"})
    config = types.GenerateContentConfig(max_output_tokens=12, thinking_config=types.ThinkingConfig(thinking_budget=64))

    response = sdk.models.generate_content(model="gemini-2.5-flash", contents=PROMPT, config=config)

    usage = response.usage_metadata
    assert (usage.candidates_token_count, usage.thoughts_token_count, usage.cached_content_token_count,
            usage.tool_use_prompt_token_count) == (12, 40, 1000, 30)
    saved = record(request_id_of(response))
    assert (saved.provider, saved.model, saved.served_model, saved.operation) == (
        "gemini-native", "gemini-2.5-flash", "gemini-2.5-flash", "generate_content")
    assert (saved.input_tokens, saved.cached_input_tokens, saved.output_tokens, saved.reasoning_tokens) == (
        usage.prompt_token_count + 30, 1000, 12 + 40, 40)
    assert saved.feature == "greeter" and saved.usage_source == "reported" and not saved.streamed
    wire = {"promptTokenCount": usage.prompt_token_count, "candidatesTokenCount": 12, "thoughtsTokenCount": 40,
            "cachedContentTokenCount": 1000, "toolUsePromptTokenCount": 30}
    assert saved.cost_usd == catalogue_cost(wire, "gemini-2.5-flash") > 0
    assert Decimal(response.sdk_http_response.headers["x-tokonomics-cost-usd"]) == saved.cost_usd


def test_a_streamed_call_costs_what_the_same_call_costs_unstreamed(gemini: Stack) -> None:
    sdk = client(gemini.proxy, **{"X-Sim-Reasoning-Tokens": "25"})
    config = types.GenerateContentConfig(max_output_tokens=9)
    plain = sdk.models.generate_content(model="gemini-2.5-pro", contents=PROMPT, config=config)

    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-pro", contents=PROMPT, config=config))

    assert "".join(chunk.text or "" for chunk in chunks) == plain.text
    assert chunks[-1].usage_metadata.candidates_token_count == 9
    upstream = upstream_calls(gemini)[-1]
    assert upstream["path"].endswith(":streamGenerateContent") and upstream["query"] == "alt=sse"
    streamed = record(request_id_of(chunks[0]))
    unstreamed = record(request_id_of(plain))
    assert streamed.streamed and streamed.usage_source == "reported"
    for name in ("input_tokens", "output_tokens", "reasoning_tokens", "cost_usd", "served_model"):
        assert getattr(streamed, name) == getattr(unstreamed, name), name
    assert streamed.output_tokens == 9 + 25


def test_a_json_array_stream_without_alt_sse_is_relayed_as_it_comes_and_metered(gemini: Stack) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 6}}
    url = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    headers = {"x-goog-api-key": KEY, "X-Sim-Reasoning-Tokens": "3"}
    direct = httpx.post(f"{gemini.sim}{url}", json=body, headers=headers)

    proxied = httpx.post(f"{gemini.proxy}/proxy/gemini-native{url}", json=body, headers=headers)

    chunks = proxied.json()
    assert proxied.headers["content-type"].startswith("application/json") and len(chunks) == len(direct.json()) == 6
    assert "x-tokonomics-cost-usd" not in proxied.headers  # a stream: its cost is known once it ends
    saved = record(proxied.headers["x-tokonomics-request-id"])
    assert saved.streamed and saved.usage_source == "reported" and saved.output_tokens == 6 + 3
    assert saved.cost_usd == catalogue_cost(chunks[-1]["usageMetadata"], "gemini-2.5-flash")


def test_a_key_limited_to_other_models_is_refused_in_googles_format(gemini: Stack) -> None:
    gemini.key.allowed_models = ["gpt-*"]
    gemini.key.save()
    proxy_config_seen()
    sdk = client(gemini.proxy)

    with pytest.raises(errors.ClientError) as refused:
        sdk.models.generate_content(model="gemini-2.5-pro", contents=PROMPT)

    assert refused.value.code == 403 and refused.value.status == "PERMISSION_DENIED"
    assert refused.value.details["error"]["details"][0]["reason"] == "MODEL_NOT_ALLOWED"
    assert upstream_calls(gemini) == []


def test_a_prompt_over_200k_tokens_is_priced_at_the_long_context_tier(gemini: Stack) -> None:
    sdk = client(gemini.proxy, **{"X-Sim-Prompt-Tokens": "250000", "X-Sim-Reasoning-Tokens": "100"})
    config = types.GenerateContentConfig(max_output_tokens=20)

    long = sdk.models.generate_content(model="gemini-2.5-pro", contents=PROMPT, config=config)
    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-pro", contents=PROMPT, config=config))

    wire = {"promptTokenCount": 250000, "candidatesTokenCount": 20, "thoughtsTokenCount": 100}
    expected = catalogue_cost(wire, "gemini-2.5-pro")
    # $2.50 / $15 per million above 200k tokens, against $1.25 / $10 below: the tier is what is charged.
    assert expected == Decimal("250000") * Decimal("2.5") / 10**6 + Decimal(120) * 15 / 10**6
    for response in (long, chunks[-1]):
        assert record(request_id_of(response)).cost_usd == expected


def test_count_tokens_and_model_listings_are_free_and_recorded(gemini: Stack) -> None:
    sdk = client(gemini.proxy)

    counted = sdk.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT)
    models = [model.name for model in sdk.models.list()]
    one = sdk.models.get(model="gemini-2.5-pro")

    assert counted.total_tokens > 0 and "models/gemini-2.5-pro" in models and one.name == "models/gemini-2.5-pro"
    assert counted.sdk_http_response.headers["x-tokonomics-cost-usd"] == "0.000000000"
    saved = record(request_id_of(counted))
    assert (saved.operation, saved.cost_usd, saved.input_tokens, saved.status_code) == ("count_tokens", 0, 0, 200)
    usage_ingest(max_seconds=1)
    assert set(UsageRecord.objects.values_list("operation", flat=True)) == {"count_tokens", "models"}


def test_embeddings_are_metered(gemini: Stack) -> None:
    sdk = client(gemini.proxy)

    embedded = sdk.models.embed_content(model="gemini-embedding-001", contents=["one text", "and another text"])

    assert len(embedded.embeddings) == 2
    assert upstream_calls(gemini)[-1]["path"].endswith("/models/gemini-embedding-001:batchEmbedContents")
    usage_ingest(max_seconds=1)
    saved = UsageRecord.objects.get(operation="embeddings")
    assert saved.model == "gemini-embedding-001" and saved.input_tokens == 2 + 4 and saved.output_tokens == 0
    assert saved.cost_usd == calc_price(extract_usage({"usageMetadata": {"promptTokenCount": 6}}, provider_id="google")
                                        .usage, "gemini-embedding-001", provider_id="google").total_price


# --- keys: ours in, the account's out, never the other way -------------------------------------------

def test_the_key_travels_as_google_sends_it_and_never_upstream(gemini: Stack) -> None:
    sdk = client(gemini.proxy)
    sdk_response = sdk.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    by_query = httpx.post(f"{gemini.proxy}/proxy/gemini-native/v1beta/models/gemini-2.5-flash:generateContent"
                          f"?key={KEY}&alt=json", json={"contents": [{"parts": [{"text": PROMPT}]}]})

    assert sdk_response.text and by_query.status_code == 200, by_query.text
    for upstream in upstream_calls(gemini):
        assert upstream["headers"]["x-goog-api-key"] == CREDENTIAL
        assert KEY not in str(upstream) and "authorization" not in upstream["headers"]
    assert upstream_calls(gemini)[-1]["query"] == "alt=json"  # the caller's other parameters, as sent
    assert CREDENTIAL not in by_query.text and CREDENTIAL not in str(by_query.headers)


def test_refusals_are_in_googles_error_format(gemini: Stack) -> None:
    stranger = client(gemini.proxy, api_key="mk_" + "x" * 40)  # held: a client closes when collected
    with pytest.raises(errors.ClientError) as unknown:
        stranger.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    assert unknown.value.code == 401 and unknown.value.status == "UNAUTHENTICATED"
    assert unknown.value.details["error"]["details"][0]["reason"] == "INVALID_API_KEY"

    budget = Budget.objects.create(account=gemini.account, scope="account", match="", period="month",
                                   limit_usd=Decimal("0.000001"), hard=True)
    proxy_config_seen()
    gemini.clear_sim()
    sdk = client(gemini.proxy)
    for call in (lambda: sdk.models.generate_content(model="gemini-2.5-pro", contents=PROMPT),
                 lambda: list(sdk.models.generate_content_stream(model="gemini-2.5-pro", contents=PROMPT))):
        with pytest.raises(errors.ClientError) as denied:
            call()
        assert denied.value.code == 429 and denied.value.status == "RESOURCE_EXHAUSTED"
        detail = denied.value.details["error"]["details"][0]
        assert detail["metadata"] == {"type": "budget_exceeded", "code": "account_budget"}
        assert denied.value.response.headers["x-tokonomics-denied-scope"] == "account_budget"
    assert upstream_calls(gemini) == []  # denied before the upstream call
    assert sdk.models.count_tokens(model="gemini-2.5-pro", contents=PROMPT).total_tokens > 0  # free: not denied
    usage_ingest(max_seconds=1)
    denials = UsageRecord.objects.filter(status_code=429)
    assert [(r.denied_scope, r.cost_usd) for r in denials] == [("account_budget", 0)] * 2
    assert budget.pk


HOSTILE_PATHS = [
    # an encoded colon decodes to the same method, and is forwarded as the very path metered
    ("/v1beta/models/gemini-2.5-flash%3AgenerateContent", 200, "/v1beta/models/gemini-2.5-flash:generateContent"),
    ("/v1beta/models/gemini-2.5-flash%3acountTokens", 200, "/v1beta/models/gemini-2.5-flash:countTokens"),
    # which method a second ':' names is Google's guess: refused, even for an account allowing unmetered routes
    ("/v1beta/models/gemini-2.5-flash:generateContent:countTokens", 400, None),
    ("/v1beta/models/gemini-2.5-flash:countTokens%3AgenerateContent", 400, None),
    ("/v1beta/models/gemini:2.5:generateContent?alt=sse", 400, None),
    ("/v1beta/models/x/..:generateContent", 403, None),  # not a dot segment, but no model name either
    ("/v1beta/models/..%2Fgemini-2.5-flash:generateContent", 400, None),
    ("/v1beta/models/%2e%2e/gemini-2.5-flash:countTokens", 400, None),
    ("/v1beta/models/gemini%00:generateContent", 400, None),
    ("/v1beta/models/gemini-2.5-flash:countTokens%3F:generateContent", 400, None),
    ("/v1beta/models/gemini-%C3%A9:generateContent", 200, "/v1beta/models/gemini-%C3%A9:generateContent"),
]


@pytest.mark.parametrize(("path", "status", "forwarded"), HOSTILE_PATHS)
def test_hostile_paths_are_metered_as_forwarded_or_refused(gemini: Stack, path: str, status: int,
                                                          forwarded: str | None) -> None:
    gemini.account.allow_unmetered_routes = status == 400  # a refused path is refused all the same
    gemini.account.save()
    proxy_config_seen()
    gemini.clear_sim()
    response = httpx.post(f"{gemini.proxy}/proxy/gemini-native{path}", headers={"x-goog-api-key": KEY},
                          json={"contents": [{"parts": [{"text": "hi"}]}]})

    assert response.status_code == status, response.text
    if status >= 400:
        error = response.json()["error"]
        assert (error["code"], error["status"]) == (status, {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}[status])
        assert error["details"][0]["metadata"]["code"] == {400: "invalid_path", 403: "unmetered_route"}[status]
    upstream = upstream_calls(gemini)
    assert [u["raw_path"].partition("?")[0] for u in upstream] == ([forwarded] if forwarded else [])


# --- streams under both servers ----------------------------------------------------------------

@pytest.fixture(params=SERVERS)
def proxy_url(request: pytest.FixtureRequest, gemini: Stack) -> Iterator[str]:
    yield from proxy_served_by(request.param, gemini.proxy)


def test_sse_streams_pass_through_and_are_metered_under_both_servers(proxy_url: str, gemini: Stack) -> None:
    sdk = client(proxy_url, **{"X-Sim-Reasoning-Tokens": "7"})
    config = types.GenerateContentConfig(max_output_tokens=15)
    direct = httpx.post(f"{gemini.sim}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                        headers={"x-goog-api-key": "direct", "X-Sim-Reasoning-Tokens": "7"},
                        json={"contents": [{"parts": [{"text": PROMPT}], "role": "user"}],
                              "generationConfig": {"maxOutputTokens": 15}})
    proxied = httpx.post(f"{proxy_url}/proxy/gemini-native/v1beta/models/gemini-2.5-flash:streamGenerateContent"
                         "?alt=sse", headers={"x-goog-api-key": KEY, "X-Sim-Reasoning-Tokens": "7"},
                         json={"contents": [{"parts": [{"text": PROMPT}], "role": "user"}],
                               "generationConfig": {"maxOutputTokens": 15}}, timeout=20)

    # Byte for byte what the provider sent (its response ids aside), \r\n framing included.
    strip_ids = [line for line in proxied.text.split("\r\n") if line]
    assert len(strip_ids) == len([line for line in direct.text.split("\r\n") if line]) == 15
    assert proxied.headers["content-type"].startswith("text/event-stream")
    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT, config=config))
    assert chunks[-1].usage_metadata.thoughts_token_count == 7
    for request_id in (proxied.headers["x-tokonomics-request-id"], request_id_of(chunks[0])):
        saved = record(request_id)
        assert saved.streamed and saved.usage_source == "reported" and saved.output_tokens == 15 + 7
        assert saved.cost_usd == catalogue_cost({"promptTokenCount": saved.input_tokens, "candidatesTokenCount": 15,
                                                 "thoughtsTokenCount": 7}, "gemini-2.5-flash")

    # A stream the provider cuts ends at once for the client too, and is recorded as an estimate from what was
    # seen: the usage restated so far (3 words), or the text, whichever says more.
    with httpx.stream("POST", f"{proxy_url}/proxy/gemini-native/v1beta/models/gemini-2.5-flash:streamGenerateContent"
                      "?alt=sse", headers={"x-goog-api-key": KEY, "X-Sim-Drop-After": "3"}, timeout=20,
                      json={"contents": [{"parts": [{"text": PROMPT}]}]}) as cut:
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in cut.iter_bytes():
                pass
        assert time.monotonic() - started < 5
    saved = record(cut.headers["x-tokonomics-request-id"])
    assert saved.streamed and saved.usage_source == "estimated" and saved.output_tokens >= 3 and saved.cost_usd > 0


# --- the demo's traffic ------------------------------------------------------------------------

def test_demo_traffic_sends_gemini_native_calls_that_are_metered(gemini: Stack) -> None:
    random.seed(17)
    errors_out = io.StringIO()

    call_command("demotraffic", site=gemini.proxy, key=KEY, interval=0, count=40, stderr=errors_out)

    assert errors_out.getvalue() == ""
    usage_ingest(max_seconds=1)
    native = UsageRecord.objects.filter(provider="gemini-native")
    assert {r.status_code for r in UsageRecord.objects.all()} == {200}
    assert {r.operation for r in native} == {"generate_content", "embeddings"}
    assert any(r.streamed for r in native) and any(r.reasoning_tokens for r in native)
    assert all(r.cost_usd and r.cost_usd > 0 and r.usage_source == "reported" for r in native)

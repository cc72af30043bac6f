"""OpenAI-compatible providers' usage quirks (proxy/providers/quirks.py), each from a recorded answer in
tests/fixtures/sse/: read by the wire format, then end to end through the proxy, priced exactly, with the
provider's own cost kept beside ours and a disagreement flagged."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.providers import WIRE_FORMATS
from proxy.providers.base import Operation, RequestInfo
from proxy.services import config_version_bump
from proxy.usage import TokenUsage

from ..support import KEY, Stack, proxy_config_seen, wait_until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sse"
OPENAI = WIRE_FORMATS["openai"]
M = Decimal(1_000_000)

# fixture → (provider kind, model asked for, usage as normalised, provider's own cost, our cost)
CASES = {
    "deepseek_chat_cache_hit.json": (
        "deepseek", "deepseek-chat", TokenUsage(input_tokens=1312, output_tokens=41, cached_input_tokens=1280),
        None, None),
    "deepseek_reasoner_stream.sse": (
        "deepseek", "deepseek-reasoner",
        TokenUsage(input_tokens=1104, output_tokens=96, cached_input_tokens=1024, reasoning_tokens=78),
        None, None),
    "groq_chat.json": (
        "groq", "llama-3.3-70b-versatile", TokenUsage(input_tokens=46, output_tokens=12),
        None, (46 * Decimal("0.59") + 12 * Decimal("0.79")) / M),
    "groq_chat_stream_x_groq.sse": (
        "groq", "llama-3.3-70b-versatile", TokenUsage(input_tokens=46, output_tokens=12),
        None, (46 * Decimal("0.59") + 12 * Decimal("0.79")) / M),
    "openai_chat_stream_usage_on_last_choice.sse": (
        "mistral", "mistral-small-latest", TokenUsage(input_tokens=12, output_tokens=24),
        None, (12 * Decimal("0.15") + 24 * Decimal("0.6")) / M),
    "together_chat_stream.sse": (
        "together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", TokenUsage(input_tokens=38, output_tokens=8),
        None, (38 + 8) * Decimal("0.88") / M),
    "fireworks_chat_stream.sse": (
        "fireworks", "accounts/fireworks/models/deepseek-v3p2",
        TokenUsage(input_tokens=2210, output_tokens=7, cached_input_tokens=2048), None, None),
    "perplexity_sonar.json": (
        "perplexity", "sonar", TokenUsage(input_tokens=9, output_tokens=143, provider_cost_usd=Decimal("0.012152")),
        Decimal("0.012152"), (9 + 143) * Decimal(1) / M + Decimal("0.012")),
    "perplexity_deep_research_stream.sse": (
        "perplexity", "sonar-deep-research",
        TokenUsage(input_tokens=12, output_tokens=5237 + 91357, reasoning_tokens=91357,
                   provider_cost_usd=Decimal("0.480481")),
        Decimal("0.480481"), (12 * 2 + 5237 * 8 + 91357 * 3) / M),
    "openrouter_chat.json": (
        "openrouter", "openai/gpt-4o-mini",
        TokenUsage(input_tokens=194, output_tokens=2, provider_cost_usd=Decimal("0.0000303")),
        Decimal("0.0000303"), (194 * Decimal("0.15") + 2 * Decimal("0.6")) / M),
    "openrouter_chat_stream.sse": (
        "openrouter", "openai/gpt-4o-mini",
        TokenUsage(input_tokens=194, output_tokens=2, provider_cost_usd=Decimal("0.0000303")),
        Decimal("0.0000303"), (194 * Decimal("0.15") + 2 * Decimal("0.6")) / M),
}
# Where ours and the provider's disagree: Perplexity's citation tokens and searches (genai-prices has no
# rate we apply to them), and a provider that reported its cost in cents.
MISMATCHED = {"perplexity_deep_research_stream.sse", "openrouter_chat_cost_in_cents.json"}


def read_fixture(name: str) -> TokenUsage | None:
    data = (FIXTURES / name).read_bytes()
    if name.endswith(".json"):
        return OPENAI.usage_from_body(Operation.CHAT, data)[0]
    info = RequestInfo(operation=Operation.CHAT, model="", stream=True, max_output_tokens=None,
                       estimated_input_tokens=0, body=b"{}")
    reader = OPENAI.stream_reader(info)
    # Split mid-event, as a network would.
    forwarded = reader.feed(data[:100]) + reader.feed(data[100:]) + reader.close()
    assert forwarded == data
    return reader.usage


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_providers_usage_is_read_as_recorded(name: str) -> None:
    assert read_fixture(name) == CASES[name][2]


def test_a_cost_in_the_wrong_unit_is_kept_as_reported() -> None:
    usage = read_fixture("openrouter_chat_cost_in_cents.json")
    assert usage is not None and usage.provider_cost_usd == Decimal("0.00303") and usage.input_tokens == 194


@pytest.mark.parametrize("cost", ["-1", "1e30", "true", '"lots"', "[1]", "null"])
def test_a_nonsense_provider_cost_is_dropped(cost: str) -> None:
    body = f'{{"model":"m","usage":{{"prompt_tokens":3,"completion_tokens":1,"cost":{cost}}}}}'.encode()
    usage = OPENAI.usage_from_body(Operation.CHAT, body)[0]
    assert usage == TokenUsage(input_tokens=3, output_tokens=1)


# --- end to end -----------------------------------------------------------------------------------

@pytest.fixture
def providers(stack: Stack) -> Stack:
    from proxy.models import ProviderEndpoint

    for kind in ("deepseek", "groq", "mistral", "together", "fireworks", "perplexity", "openrouter"):
        endpoint = ProviderEndpoint(account=stack.account, slug=kind, wire_format="openai",
                                    base_url=f"{stack.sim}/v1", pricing_provider=kind)
        endpoint.set_credential(f"sk-{kind}")
        endpoint.save()
    config_version_bump()
    proxy_config_seen()
    return stack


def mismatches(stack: Stack, provider: str) -> float:
    text = httpx.get(f"{stack.proxy}/metrics").text
    found = re.search(rf'^tokonomics_provider_cost_mismatch_total{{provider="{provider}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def call(stack: Stack, name: str, provider: str, model: str) -> UsageRecord:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": name.endswith(".sse")}
    response = httpx.post(f"{stack.proxy}/proxy/{provider}/chat/completions", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {KEY}", "X-Sim-Fixture": name})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-tokonomics-request-id"]
    stored = UsageRecord.objects.filter(request_id=request_id)
    wait_until(lambda: usage_ingest(max_seconds=1) >= 0 and stored.exists(), 10)
    return UsageRecord.objects.get(request_id=request_id)


@pytest.mark.parametrize("name", sorted([*CASES, "openrouter_chat_cost_in_cents.json"]))
def test_each_provider_is_metered_exactly_through_the_proxy(providers: Stack, name: str) -> None:
    provider, model, usage, theirs, ours = CASES.get(name, CASES["openrouter_chat.json"])
    if name == "openrouter_chat_cost_in_cents.json":
        theirs = Decimal("0.00303")
    before = mismatches(providers, provider)
    saved = call(providers, name, provider, model)
    assert (saved.input_tokens, saved.output_tokens, saved.cached_input_tokens, saved.reasoning_tokens) == (
        usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.reasoning_tokens)
    assert saved.usage_source == "reported" and saved.streamed == name.endswith(".sse")
    if ours is None:
        # Priced from the catalogue's own rates, checked against genai-prices itself at the call's own time:
        # DeepSeek's prices halve off-peak (16:30 to 00:30 UTC), so a fixed figure fails half the day.
        from genai_prices import Usage, calc_price

        ours = calc_price(Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                                cache_read_tokens=usage.cached_input_tokens), model, provider_id=provider,
                          genai_request_timestamp=saved.created_at).total_price
    assert saved.cost_usd == ours.quantize(Decimal("0.000000001")) and saved.cost_usd > 0
    assert saved.provider_cost_usd == theirs
    assert mismatches(providers, provider) == before + (1 if name in MISMATCHED else 0)

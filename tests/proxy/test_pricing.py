"""proxy.pricing prices calls exactly as genai-prices does, from the bundled catalogue, without raising."""

from __future__ import annotations

import dataclasses
import socket
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import genai_prices
import pytest
from genai_prices.data import providers as bundled_providers
from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proxy import pricing
from proxy.pricing import (
    NANO_USD,
    UNKNOWN_MODEL_MAX_OUTPUT_TOKENS,
    LongContextTier,
    PriceTable,
    catalogue_price_table,
    cost_usd,
    default_max_output_tokens,
    price_usage,
    validate_override,
)
from proxy.usage import TokenUsage

CATALOGUE_MODELS = [(provider.id, model.id) for provider in bundled_providers for model in provider.models]
LONG_CONTEXT_MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-sonnet-4"),
    ("google", "gemini-2.5-pro"),
    ("openrouter", "qwen/qwen3-coder-flash"),  # two tiers: 32k and 128k
]


def usage(
    input_tokens: int = 0,
    output_tokens: int = 0,
    *,
    cached: int = 0,
    writes: int = 0,
    writes_1h: int = 0,
    reasoning: int = 0,
) -> TokenUsage:
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=writes,
        cache_write_1h_tokens=writes_1h,
        reasoning_tokens=reasoning,
    )


def genai_cost(provider_id: str, model: str, tokens: TokenUsage, at: datetime) -> Decimal | None:
    """genai-prices' own figure for the same call, rounded as ours is; None if it cannot find the model."""
    genai_usage = genai_prices.Usage(
        input_tokens=tokens.input_tokens,
        output_tokens=tokens.output_tokens,
        cache_read_tokens=tokens.cached_input_tokens,
        cache_write_tokens=tokens.cache_write_tokens,
        cache_write_1h_tokens=tokens.cache_write_1h_tokens,
        output_reasoning_tokens=tokens.reasoning_tokens,
    )
    try:
        calculation = genai_prices.calc_price(
            genai_usage, model, provider_id=provider_id, genai_request_timestamp=at
        )
    except LookupError:
        return None
    return calculation.total_price.quantize(NANO_USD, rounding=ROUND_HALF_UP)


def ours(
    provider_id: str | None, model: str, tokens: TokenUsage, at: datetime | None = None
) -> Decimal | None:
    return price_usage(provider_id=provider_id, base_url=None, model=model, usage=tokens, at=at)


@st.composite
def token_usages(draw: st.DrawFn, max_tokens: int = 2_000_000) -> TokenUsage:
    """Consistent usage: cache reads and writes are parts of input, reasoning is part of output."""
    part = st.integers(min_value=0, max_value=max_tokens // 4)
    uncached, cached, writes_5m, writes_1h = draw(part), draw(part), draw(part), draw(part)
    output_tokens = draw(st.integers(min_value=0, max_value=200_000))
    return usage(
        uncached + cached + writes_5m + writes_1h,
        output_tokens,
        cached=cached,
        writes=writes_5m + writes_1h,
        writes_1h=writes_1h,
        reasoning=draw(st.integers(min_value=0, max_value=output_tokens)),
    )


request_times = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


# --- Exactly what genai-prices charges ----------------------------------------------------------------


@pytest.mark.parametrize(
    "at",
    [
        datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        datetime(2026, 8, 20, 2, 0, tzinfo=UTC),  # inside DeepSeek's 01:00-04:00 window
        datetime(2026, 9, 20, 20, 0, tzinfo=UTC),
    ],
)
def test_every_catalogue_model_costs_what_genai_prices_says(at: datetime) -> None:
    samples = [
        usage(1_000, 500, cached=200),
        usage(300_000, 2_000, cached=50_000, writes=20_000, writes_1h=5_000, reasoning=700),
        usage(200_001, 10, cached=1, writes=1, writes_1h=1, reasoning=1),
        usage(7, 3),
    ]
    compared = 0
    for provider_id, model in CATALOGUE_MODELS:
        for tokens in samples:
            expected = genai_cost(provider_id, model, tokens, at)
            actual = ours(provider_id, model, tokens, at)
            if actual is None:
                # Unpriceable from tokens: genai-prices cannot find it either, or prices it in other units.
                assert expected in (None, Decimal(0)), (provider_id, model)
                continue
            assert actual == expected, (provider_id, model, tokens)
            compared += 1
    assert compared > 2_000 * len(samples)


@settings(max_examples=1_500, deadline=None)
@given(model=st.sampled_from(CATALOGUE_MODELS), tokens=token_usages(), at=request_times)
def test_any_usage_of_any_model_costs_what_genai_prices_says(
    model: tuple[str, str], tokens: TokenUsage, at: datetime
) -> None:
    provider_id, model_id = model
    expected = genai_cost(provider_id, model_id, tokens, at)
    assume(expected is not None)
    actual = ours(provider_id, model_id, tokens, at)
    assert actual == expected or (actual is None and expected == 0)


@settings(max_examples=500, deadline=None)
@given(
    model=st.sampled_from(LONG_CONTEXT_MODELS),
    input_tokens=st.one_of(
        st.integers(min_value=150_000, max_value=300_000),
        st.sampled_from([32_000, 32_001, 128_000, 128_001, 200_000, 200_001]),
    ),
    cached=st.integers(min_value=0, max_value=150_000),
    output_tokens=st.integers(min_value=0, max_value=64_000),
)
def test_long_context_tiers_switch_where_genai_prices_switches(
    model: tuple[str, str], input_tokens: int, cached: int, output_tokens: int
) -> None:
    tokens = usage(input_tokens, output_tokens, cached=min(cached, input_tokens))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert ours(*model, tokens, at) == genai_cost(*model, tokens, at)


# --- Golden figures -----------------------------------------------------------------------------------


def test_gpt_4o_mini_with_cached_input() -> None:
    # 800 × $0.15 + 200 × $0.075 + 500 × $0.60, per million.
    assert ours("openai", "gpt-4o-mini", usage(1_000, 500, cached=200)) == Decimal("0.000435000")


def test_claude_sonnet_4_5_with_cache_reads_and_5_minute_and_1_hour_writes() -> None:
    tokens = usage(12_000, 1_500, cached=4_000, writes=3_000, writes_1h=1_000, reasoning=300)
    # 5,000 × $3 + 4,000 × $0.30 + 2,000 × $3.75 + 1,000 × $6 + 1,500 × $15, per million.
    assert ours("anthropic", "claude-sonnet-4-5", tokens) == Decimal("0.0522")


def test_claude_sonnet_4_5_over_200k_input_pays_the_long_context_rate_on_every_token() -> None:
    tokens = usage(250_000, 1_000, cached=50_000, writes=10_000, writes_1h=4_000)
    # 190,000 × $6 + 50,000 × $0.60 + 6,000 × $7.50 + 4,000 × $12 + 1,000 × $22.50, per million.
    assert ours("anthropic", "claude-sonnet-4-5", tokens) == Decimal("1.2855")


def test_long_context_tier_starts_above_its_threshold_counting_cached_input() -> None:
    assert ours("anthropic", "claude-sonnet-4-5", usage(200_000)) == Decimal("0.6")
    assert ours("anthropic", "claude-sonnet-4-5", usage(200_001)) == Decimal("1.200006")
    assert ours("anthropic", "claude-sonnet-4-5", usage(200_001, cached=200_000)) == Decimal("0.120006")


def test_gemini_has_no_cache_write_price_so_writes_cost_the_input_rate() -> None:
    tokens = usage(300_000, 1_000, cached=100_000, writes=10_000)
    # Over 200k: 190,000 × $2.50 + 100,000 × $0.25 + 10,000 × $2.50 + 1,000 × $15, per million.
    assert ours("gemini", "gemini-2.5-pro", tokens) == Decimal("0.54")


def test_deepseek_price_depends_on_the_time_of_day() -> None:
    def at(hour: int) -> Decimal | None:
        return ours("deepseek", "deepseek-chat", usage(1_000_000), datetime(2026, 1, 5, hour, tzinfo=UTC))

    assert at(12) == Decimal("0.27")
    assert at(20) == Decimal("0.135")  # off-peak


def test_price_changes_on_its_start_date() -> None:
    def on(day: datetime) -> Decimal | None:
        return ours("deepseek", "deepseek-v4-flash", usage(1_000_000), day)

    assert on(datetime(2026, 8, 16, 12, tzinfo=UTC)) == Decimal("0.14")
    assert on(datetime(2026, 8, 17, 12, tzinfo=UTC)) == Decimal("0.22")
    assert on(datetime(2026, 9, 10, 12, tzinfo=UTC)) == Decimal("0.15")


def test_per_request_fee_is_charged_once_per_call() -> None:
    # $1 in + $1 out per million, and $12 per thousand requests.
    assert ours("perplexity", "sonar", usage(1_000, 1_000)) == Decimal("0.014")


def test_reasoning_tokens_cost_the_output_rate_unless_the_model_prices_them() -> None:
    tokens = usage(0, 1_000, reasoning=600)
    assert ours("openai", "gpt-4o-mini", tokens) == Decimal("0.0006")
    # sonar-deep-research: $8 output, $3 reasoning.
    assert ours("perplexity", "sonar-deep-research", tokens) == Decimal("0.005")


def test_free_catalogue_models_cost_nothing() -> None:
    assert ours("google", "gemma-3", usage(10_000, 1_000)) == 0


def test_cost_is_rounded_half_up_to_the_nano_dollar() -> None:
    def one_token_at(input_per_mtok: str) -> Decimal:
        return cost_usd(PriceTable.from_override(input_per_mtok=input_per_mtok, output_per_mtok=0), usage(1))

    assert one_token_at("0.0005") == NANO_USD
    assert one_token_at("0.0004") == 0


def test_inconsistent_usage_is_clamped_never_negative() -> None:
    tokens = usage(100, 10, cached=300, writes=50, writes_1h=80, reasoning=40)
    cost = ours("anthropic", "claude-sonnet-4-5", tokens)
    # 300 × $0.30 + 50 × $6 (all writes 1-hour) + 10 × $15 (reasoning capped at output), per million.
    assert cost == Decimal("0.00054")


# --- Finding the model --------------------------------------------------------------------------------


def test_contract_slug_gemini_is_googles_catalogue() -> None:
    tokens = usage(1_000, 1_000)
    assert ours("gemini", "gemini-2.5-flash", tokens) == ours("google", "gemini-2.5-flash", tokens)


def test_provider_found_by_base_url_when_the_slug_is_not_a_catalogue_provider() -> None:
    tokens = usage(1_000, 1_000)
    by_url = price_usage(
        provider_id="anthropic-eu",
        base_url="https://api.anthropic.com",
        model="claude-sonnet-4-5",
        usage=tokens,
    )
    assert by_url == ours("anthropic", "claude-sonnet-4-5", tokens)


def test_custom_endpoint_falls_back_to_matching_the_model_name() -> None:
    tokens = usage(1_000, 1_000)
    self_hosted = price_usage(
        provider_id="vllm-internal", base_url="http://10.0.0.5:8000/v1", model="gpt-4o-mini", usage=tokens
    )
    assert self_hosted == ours("openai", "gpt-4o-mini", tokens)


def test_model_names_match_case_insensitively_and_with_dated_suffixes() -> None:
    tokens = usage(1_000, 1_000)
    assert ours("openai", "GPT-4o-mini-2024-07-18", tokens) == ours("openai", "gpt-4o-mini", tokens)


@pytest.mark.parametrize(
    ("provider_id", "base_url", "model"),
    [
        (None, None, "my-llama-finetune"),
        ("openai", "https://api.openai.com/v1", "no-such-model"),
        ("vllm-internal", "http://10.0.0.5:8000/v1", "qwen-local"),
        ("", "not a url", ""),
        (None, None, "x" * 10_000),
    ],
)
def test_unknown_model_costs_none(provider_id: str | None, base_url: str | None, model: str) -> None:
    assert price_usage(provider_id=provider_id, base_url=base_url, model=model, usage=usage(10, 10)) is None


def test_model_priced_only_in_other_units_costs_none() -> None:
    assert ours("openai", "whisper-1", usage(1_000)) is None


def test_pricing_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(table: PriceTable, usage: TokenUsage) -> Decimal:
        raise ArithmeticError("boom")

    monkeypatch.setattr(pricing, "cost_usd", broken)
    assert ours("openai", "gpt-4o-mini", usage(10, 10)) is None


def test_prices_come_from_the_bundled_catalogue_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object) -> None:
        raise AssertionError("pricing must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    pricing._price_schedule.cache_clear()
    # What a running UpdatePrices would install: a downloaded snapshot, here one with no providers at all.
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    try:
        assert ours("openai", "gpt-4o-mini", usage(1_000, 500, cached=200)) == Decimal("0.000435")
    finally:
        set_custom_snapshot(None)


# --- Overrides ----------------------------------------------------------------------------------------


def test_override_wins_over_the_catalogue() -> None:
    override = PriceTable.from_override(input_per_mtok=3, output_per_mtok=12)
    cost = price_usage(
        provider_id="openai", base_url=None, model="gpt-4o-mini", usage=usage(1_000, 500), override=override
    )
    assert cost == Decimal("0.009")


def test_override_prices_a_model_the_catalogue_does_not_know() -> None:
    override = PriceTable.from_override(input_per_mtok=Decimal("3.0"), output_per_mtok=Decimal("12.0"))
    cost = price_usage(
        provider_id=None, base_url=None, model="my-finetune", usage=usage(1_000, 500), override=override
    )
    assert cost == Decimal("0.009")


def test_override_cache_prices_fall_back_as_the_catalogues_do() -> None:
    table = PriceTable.from_override(input_per_mtok=0.1, output_per_mtok=0.4)
    assert table.input_per_mtok == Decimal("0.1")  # the float from YAML, not its binary approximation
    assert table.cached_input_per_mtok == table.cache_write_per_mtok == table.input_per_mtok
    assert table.reasoning_per_mtok == table.output_per_mtok

    with_writes = PriceTable.from_override(input_per_mtok=3, output_per_mtok=15, cache_write_per_mtok="3.75")
    assert with_writes.cache_write_1h_per_mtok == Decimal("3.75")
    assert with_writes.cached_input_per_mtok == Decimal(3)


def test_override_with_cache_prices() -> None:
    table = PriceTable.from_override(
        input_per_mtok=3, output_per_mtok=15, cached_input_per_mtok="0.3", cache_write_per_mtok="3.75"
    )
    # 5,000 × $3 + 4,000 × $0.30 + 1,000 × $3.75, per million.
    assert cost_usd(table, usage(10_000, 0, cached=4_000, writes=1_000)) == Decimal("0.01995")


def test_override_rejects_a_negative_price_naming_the_field() -> None:
    with pytest.raises(ValueError, match="^cached_input_per_mtok: -0.3 is negative"):
        PriceTable.from_override(input_per_mtok=3, output_per_mtok=15, cached_input_per_mtok="-0.3")


def test_price_table_is_immutable() -> None:
    table = PriceTable.from_override(input_per_mtok=3, output_per_mtok=15)
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.input_per_mtok = Decimal(0)


def test_sensible_overrides_pass_validation() -> None:
    assert (
        validate_override(provider="openai", model="my-finetune", input_per_mtok=3.0, output_per_mtok=12.0)
        == []
    )
    assert (
        validate_override(provider="vllm-internal", model="llama", input_per_mtok=0, output_per_mtok=0) == []
    )
    assert (
        validate_override(
            provider="anthropic",
            model="claude-sonnet-4-5",
            input_per_mtok=Decimal("2.4"),
            output_per_mtok=Decimal(12),
            cached_input_per_mtok=Decimal("0.24"),
            cache_write_per_mtok=Decimal(3),
        )
        == []
    )


@pytest.mark.parametrize(
    "field", ["input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok"]
)
def test_validation_rejects_a_price_typed_per_token(field: str) -> None:
    prices: dict[str, Decimal] = {"input_per_mtok": Decimal(3), "output_per_mtok": Decimal(15)}
    prices[field] = Decimal("0.000003")
    [problem] = validate_override(provider="openai", model="my-finetune", **prices)
    assert problem.startswith(f"{field}: $0.000003 per million tokens is under")
    assert "not per token; did you mean 3?" in problem


def test_validation_rejects_an_absurdly_high_price() -> None:
    [problem] = validate_override(
        provider="openai", model="my-finetune", input_per_mtok=3, output_per_mtok=Decimal(3_000_000)
    )
    assert problem.startswith("output_per_mtok: $3000000 per million tokens is over 100× the dearest")


def test_validation_rejects_negative_and_non_numeric_prices() -> None:
    problems = validate_override(
        provider="openai", model="my-finetune", input_per_mtok=-1, output_per_mtok="twelve"
    )
    assert problems == [
        "input_per_mtok: -1 is negative; prices are US dollars per million tokens",
        "output_per_mtok: 'twelve' is not a number",
    ]


def test_validation_compares_with_the_models_own_catalogue_price() -> None:
    [problem] = validate_override(
        provider="openai", model="gpt-4o-mini", input_per_mtok=Decimal(30), output_per_mtok=Decimal("0.6")
    )
    assert problem == (
        "input_per_mtok: $30 per million tokens is more than 100× away from "
        "the catalogue's price for gpt-4o-mini ($0.15 per million tokens)"
    )


# --- Default output ceilings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider_id", "model", "expected"),
    [
        ("openai", "gpt-4o-mini", 16_384),
        ("openai", "gpt-4o-2024-08-06", 16_384),
        ("openai", "gpt-4.1-mini", 32_768),
        ("openai", "o3-mini", 100_000),
        ("openai", "gpt-3.5-turbo", 4_096),
        ("anthropic", "claude-sonnet-4-5-20250929", 64_000),
        ("anthropic", "claude-opus-4-1", 32_000),
        ("anthropic", "claude-3-5-haiku-latest", 8_192),
        ("openrouter", "anthropic/claude-3.7-sonnet", 64_000),
        ("google", "gemini-2.5-pro", 65_536),
        ("deepseek", "deepseek-chat", 8_192),
        ("vllm-internal", "my-llama", UNKNOWN_MODEL_MAX_OUTPUT_TOKENS),
        (None, "", UNKNOWN_MODEL_MAX_OUTPUT_TOKENS),
    ],
)
def test_default_max_output_tokens(provider_id: str | None, model: str, expected: int) -> None:
    assert default_max_output_tokens(provider_id, model) == expected


def test_catalogue_table_has_the_long_context_tier() -> None:
    table = catalogue_price_table(provider_id="anthropic", base_url=None, model="claude-sonnet-4-5")
    assert table is not None
    [tier] = table.long_context
    assert (tier.above_input_tokens, tier.prices.input_per_mtok) == (200_000, Decimal(6))
    assert table.for_input_tokens(200_000) is table
    assert table.for_input_tokens(200_001) is tier.prices


# --- the budget estimate's price: the dearest way the counts can be billed, and no dearer ----------

rates = st.decimals(min_value=0, max_value=100, places=3)


@settings(max_examples=300, deadline=None)
@given(rates, rates, rates, rates, rates, rates, st.integers(0, 300_000), st.integers(0, 100_000),
       st.booleans(), st.booleans(), st.integers(1, 200_000))
def test_dearest_cost_is_the_highest_cost_of_any_way_the_counts_can_be_billed(
    input_rate, output_rate, cached_rate, write_rate, write_1h_rate, reasoning_rate, tokens, output, writes,
    writes_1h, tier_above,
) -> None:
    base = PriceTable(input_per_mtok=input_rate, output_per_mtok=output_rate, cached_input_per_mtok=cached_rate,
                      cache_write_per_mtok=write_rate, cache_write_1h_per_mtok=write_1h_rate,
                      reasoning_per_mtok=reasoning_rate)
    table = dataclasses.replace(base, long_context=(
        LongContextTier(tier_above, dataclasses.replace(base, input_per_mtok=input_rate * 2)),
    ))
    shapes = [(0, 0, 0), (tokens, 0, 0)]
    if writes:
        shapes.append((0, tokens, 0))
        if writes_1h:
            shapes.append((0, tokens, tokens))
    costs = [
        cost_usd(table, TokenUsage(input_tokens=tokens, output_tokens=output, cached_input_tokens=cached,
                                   cache_write_tokens=written, cache_write_1h_tokens=written_1h,
                                   reasoning_tokens=reasoning))
        for cached, written, written_1h in shapes
        for reasoning in (0, output)
    ]
    dearest = pricing.dearest_cost_usd(table, input_tokens=tokens, output_tokens=output, cache_writes=writes,
                                       cache_writes_1h=writes_1h)
    assert dearest == max(costs)

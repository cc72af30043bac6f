"""What an LLM call costs, priced from the genai-prices catalogue fast enough for the proxy's hot path.

`genai_prices.calc_price` is exact but takes ~90 µs a call. Here the catalogue is consulted once per
(provider, base URL, model) and compiled into a `PriceTable` of Decimals; pricing a call is then a handful
of Decimal multiplications. Estimates (`dearest_cost_usd`) and settlements (`cost_usd`) read the same
`price_table`, so an estimate never prices a token lower than the settlement of the same tokens will.

The catalogue is the one bundled with the installed package (`genai_prices.data.providers`), never
fetched (CONTRACT §5, "Prices"): nothing here starts `UpdatePrices` or reads
`genai_prices.data_snapshot.get_snapshot()`, which an `UpdatePrices` started elsewhere in the process
could swap for a downloaded one.

Catalogue semantics, as genai-prices 0.2.3 computes them (`ModelPrice.calc_price`, `calc_unit_price`,
`_compute_registry_priced_counts`):

- `input_tokens` is all input. Cache reads and cache writes are carved out of it and priced at their own
  rate when the model has one, otherwise they stay input and cost the input rate.
- 1-hour cache writes are carved out of cache writes: the 1-hour rate if the model has one, otherwise the
  plain (5-minute) cache-write rate.
- Reasoning tokens are part of output and cost the output rate, unless the model prices reasoning itself
  (Perplexity's sonar-deep-research does, cheaper than output).
- Long-context tiers are cliffs chosen by TOTAL input tokens, cache included: once they exceed a tier's
  start, every token of that price (output and cache too, where tiered) costs the tier rate.
- A per-request fee (`requests_kcount`, Perplexity's sonar models) is charged once per call.
- Conditional prices are tried last to first and the first whose constraint holds at the request time wins
  (start dates, and daily UTC windows such as DeepSeek's peak hours); when none holds, the first one.
- Request-specific price variants (batch processing, service tiers) are not applied, as `calc_price`
  without a `price_context` does not apply them.
- A model with no prices at all is free; a model priced only in non-token units (audio hours, pages,
  characters) cannot be priced from token counts, so it is unknown (None).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache, lru_cache

from genai_prices.data_snapshot import find_provider_by_id
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from proxy.usage import TokenUsage

logger = logging.getLogger(__name__)

PriceInput = Decimal | int | float | str

NANO_USD = Decimal("0.000000001")
"""Costs are rounded half-up to this, a billionth of a dollar (the contract asks for 6+ places)."""

UNKNOWN_MODEL_MAX_OUTPUT_TOKENS = 4_096

_ZERO = Decimal(0)
_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1_000)

# Catalogue price keys this module understands, all that token counts and a call count can be priced by.
_INPUT = "input_mtok"
_OUTPUT = "output_mtok"
_CACHE_READ = "cache_read_mtok"
_CACHE_WRITE = "cache_write_mtok"
_CACHE_WRITE_1H = "cache_write_1h_mtok"
_REASONING = "output_reasoning_mtok"
_PER_THOUSAND_REQUESTS = "requests_kcount"
_USED_PRICE_KEYS = (
    _INPUT,
    _OUTPUT,
    _CACHE_READ,
    _CACHE_WRITE,
    _CACHE_WRITE_1H,
    _REASONING,
    _PER_THOUSAND_REQUESTS,
)

_CatalogueValue = Decimal | TieredPrices | None
_Constraint = StartDateConstraint | TimeOfDateConstraint


@dataclass(frozen=True, slots=True)
class LongContextTier:
    """The prices of every token of a call whose total input tokens exceed `above_input_tokens`."""

    above_input_tokens: int
    prices: PriceTable


@dataclass(frozen=True, slots=True)
class PriceTable:
    """A model's prices, in US dollars per million tokens (plus a per-call fee, rarely non-zero).

    Fallbacks are already applied: every field holds the rate that token kind is actually charged.
    `long_context` is in ascending order of `above_input_tokens`.
    """

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal
    cache_write_per_mtok: Decimal
    cache_write_1h_per_mtok: Decimal
    reasoning_per_mtok: Decimal
    per_request_usd: Decimal = _ZERO
    long_context: tuple[LongContextTier, ...] = ()

    @classmethod
    def from_override(
        cls,
        *,
        input_per_mtok: PriceInput,
        output_per_mtok: PriceInput,
        cached_input_per_mtok: PriceInput | None = None,
        cache_write_per_mtok: PriceInput | None = None,
        cache_write_1h_per_mtok: PriceInput | None = None,
    ) -> PriceTable:
        """An account's own prices. Missing cache prices fall back as the catalogue's do: cache reads and
        writes at the input price, 1-hour writes at the cache-write price. Raises ValueError on a negative
        or non-numeric price (see `validate_override` for friendlier checks)."""
        input_price = _parse_price("input_per_mtok", input_per_mtok)
        output_price = _parse_price("output_per_mtok", output_per_mtok)
        cache_write_price = _parse_optional_price("cache_write_per_mtok", cache_write_per_mtok, input_price)
        return cls(
            input_per_mtok=input_price,
            output_per_mtok=output_price,
            cached_input_per_mtok=_parse_optional_price(
                "cached_input_per_mtok", cached_input_per_mtok, input_price
            ),
            cache_write_per_mtok=cache_write_price,
            cache_write_1h_per_mtok=_parse_optional_price(
                "cache_write_1h_per_mtok", cache_write_1h_per_mtok, cache_write_price
            ),
            reasoning_per_mtok=output_price,
        )

    def for_input_tokens(self, input_tokens: int) -> PriceTable:
        """The prices in force for a call with this many input tokens (cache reads and writes included)."""
        prices = self
        for tier in self.long_context:
            if input_tokens <= tier.above_input_tokens:
                break
            prices = tier.prices
        return prices


def cost_usd(table: PriceTable, usage: TokenUsage) -> Decimal:
    """The cost of `usage` at `table`'s prices, rounded half-up to the nano-dollar.

    Inconsistent counts (cache reads and writes exceeding all input, reasoning exceeding output) are
    clamped rather than rejected, so a provider's odd usage report never yields a negative cost.
    """
    prices = table.for_input_tokens(usage.input_tokens)
    cache_writes_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    uncached_input = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
    reasoning = min(usage.reasoning_tokens, usage.output_tokens)
    per_million = (
        prices.input_per_mtok * uncached_input
        + prices.cached_input_per_mtok * usage.cached_input_tokens
        + prices.cache_write_per_mtok * (usage.cache_write_tokens - cache_writes_1h)
        + prices.cache_write_1h_per_mtok * cache_writes_1h
        + prices.output_per_mtok * (usage.output_tokens - reasoning)
        + prices.reasoning_per_mtok * reasoning
    )
    return (per_million / _MILLION + prices.per_request_usd).quantize(NANO_USD, rounding=ROUND_HALF_UP)


def price_usage(
    *,
    provider_id: str | None,
    base_url: str | None,
    model: str,
    usage: TokenUsage,
    at: datetime | None = None,
    override: PriceTable | None = None,
) -> Decimal | None:
    """The cost of one call in USD, or None when the model's price is unknown. Never raises.

    `override` (an account's own price) wins over the catalogue. `at` is when the request was made (default:
    now); pass the same instant when estimating and settling one call, so both see the same prices.
    """
    return cost_or_none(price_table(provider_id=provider_id, base_url=base_url, model=model, at=at, override=override),
                        usage)


def cost_or_none(table: PriceTable | None, usage: TokenUsage) -> Decimal | None:
    """`cost_usd`, or None when the price is unknown (`table` None) or cannot be computed. Never raises."""
    if table is None:
        return None
    try:
        return cost_usd(table, usage)
    except Exception:
        # The hot path records an unknown cost rather than failing a call the provider already served.
        logger.exception("Could not price %r", usage)
        return None


def price_table(
    *,
    provider_id: str | None,
    base_url: str | None,
    model: str,
    at: datetime | None = None,
    override: PriceTable | None = None,
) -> PriceTable | None:
    """The prices a call is charged at: the account's `override`, else the catalogue's at `at`; None when
    the model's price is unknown. Never raises."""
    if override is not None:
        return override
    try:
        return catalogue_price_table(provider_id=provider_id, base_url=base_url, model=model, at=at)
    except Exception:
        logger.exception("Could not find the price of %r for provider %r", model, provider_id)
        return None


def dearest_cost_usd(
    table: PriceTable, *, input_tokens: int, output_tokens: int, cache_writes: bool, cache_writes_1h: bool
) -> Decimal:
    """The most these token counts can cost, for a budget estimate: every input token at the dearest input
    rate (uncached, read from a cache, or written to one where `cache_writes` says the call may write), every
    output token at the dearer of output and reasoning. Equals the highest `cost_usd` over those shapes of
    usage, so the settlement of the same counts never costs more."""
    prices = table.for_input_tokens(input_tokens)
    input_rate = max(prices.input_per_mtok, prices.cached_input_per_mtok)
    if cache_writes:
        input_rate = max(input_rate, prices.cache_write_per_mtok)
        if cache_writes_1h:
            input_rate = max(input_rate, prices.cache_write_1h_per_mtok)
    output_rate = max(prices.output_per_mtok, prices.reasoning_per_mtok)
    per_million = input_rate * input_tokens + output_rate * output_tokens
    return (per_million / _MILLION + prices.per_request_usd).quantize(NANO_USD, rounding=ROUND_HALF_UP)


def catalogue_price_table(
    *, provider_id: str | None, base_url: str | None, model: str, at: datetime | None = None
) -> PriceTable | None:
    """The bundled catalogue's prices for `model` in force at `at` (default: now), or None if unknown.

    The provider is found as genai-prices finds it: by id (contract slugs such as `gemini` are matched
    too), else by `base_url`, else by the model name alone.
    """
    schedule = _price_schedule(provider_id, base_url, model)
    return None if schedule is None else schedule.prices_at(at)


def validate_override(
    *,
    provider: str | None,
    model: str,
    input_per_mtok: PriceInput,
    output_per_mtok: PriceInput,
    cached_input_per_mtok: PriceInput | None = None,
    cache_write_per_mtok: PriceInput | None = None,
    cache_write_1h_per_mtok: PriceInput | None = None,
) -> list[str]:
    """Problems with an account's price override, one message per bad field, each starting with its name.

    Catches prices typed per token instead of per million tokens (0.000003 for 3.0) and absurd ones
    (3000000): a price is rejected when below 1/10 of the cheapest price of its kind in the catalogue or
    above 100× the dearest, or more than 100× away from the model's own catalogue price either way.
    Zero is accepted (self-hosted models are free).
    """
    catalogue = catalogue_price_table(provider_id=provider, base_url=None, model=model)
    prices = {
        "input_per_mtok": input_per_mtok,
        "output_per_mtok": output_per_mtok,
        "cached_input_per_mtok": cached_input_per_mtok,
        "cache_write_per_mtok": cache_write_per_mtok,
        "cache_write_1h_per_mtok": cache_write_1h_per_mtok,
    }
    problems: list[str] = []
    for field, value in prices.items():
        if value is not None and (problem := _override_price_problem(field, value, model, catalogue)):
            problems.append(problem)
    return problems


@lru_cache(maxsize=4096)
def default_max_output_tokens(provider_id: str | None, model: str) -> int:
    """The most output tokens a call may produce when the request sets no limit, for budget estimates:
    the model's published ceiling, else UNKNOWN_MODEL_MAX_OUTPUT_TOKENS."""
    return published_max_output_tokens(provider_id, model) or UNKNOWN_MODEL_MAX_OUTPUT_TOKENS


@lru_cache(maxsize=4096)
def published_max_output_tokens(provider_id: str | None, model: str) -> int | None:
    """The model's published output ceiling; None for a model of no known family.

    genai-prices 0.2.3 knows context windows but not output limits, so the limits come from
    `_MAX_OUTPUT_TOKENS_BY_FAMILY`, matched on the requested name, then on the catalogue's canonical id for
    it (which resolves aliases).
    """
    catalogue_model = _find_model_or_none(provider_id, None, model)
    names = (model,) if catalogue_model is None else (model, catalogue_model.id)
    for name in names:
        for family, max_output_tokens in _MAX_OUTPUT_TOKEN_FAMILIES:
            if family.search(name.lower()):
                return max_output_tokens
    return None


# Published maximum output tokens per model family, matched as a prefix of the model name or of any
# `vendor/` or `vendor.` part of it; the longest matching prefix wins.
_MAX_OUTPUT_TOKENS_BY_FAMILY: Mapping[str, int] = {
    "gpt-3.5-turbo": 4_096,
    "gpt-4": 8_192,
    "gpt-4-turbo": 4_096,
    "gpt-4-1106": 4_096,
    "gpt-4-0125": 4_096,
    "gpt-4o": 16_384,
    "chatgpt-4o": 16_384,
    "gpt-4.1": 32_768,
    "gpt-4.5": 16_384,
    "gpt-5": 128_000,
    "gpt-5-chat": 16_384,
    "o1": 100_000,
    "o1-preview": 32_768,
    "o1-mini": 65_536,
    "o3": 100_000,
    "o4-mini": 100_000,
    "claude-instant": 4_096,
    "claude-2": 4_096,
    "claude-3": 4_096,
    "claude-3-5": 8_192,
    "claude-3.5": 8_192,
    "claude-3-7-sonnet": 64_000,
    "claude-3.7-sonnet": 64_000,
    "claude-opus-4-0": 32_000,
    "claude-opus-4-1": 32_000,
    "claude-opus-4.1": 32_000,
    "claude-opus-4-2025": 32_000,
    # Sonnet 4.x, Haiku 4.5, Opus 4.5 and the Claude models after them.
    "claude": 64_000,
    "gemini-1": 8_192,
    "gemini-2.0": 8_192,
    "gemini": 65_536,
    "deepseek-chat": 8_192,
    "deepseek-reasoner": 64_000,
}
_MAX_OUTPUT_TOKEN_FAMILIES = tuple(
    (re.compile(rf"(?:^|[/.]){re.escape(family)}"), max_output_tokens)
    for family, max_output_tokens in sorted(
        _MAX_OUTPUT_TOKENS_BY_FAMILY.items(), key=lambda item: -len(item[0])
    )
)


# --- Catalogue resolution -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PriceSchedule:
    """A catalogue model's prices over time, in genai-prices' precedence order (last declared first)."""

    latest_first: tuple[tuple[_Constraint | None, PriceTable | None], ...]
    when_none_applies: PriceTable | None

    def prices_at(self, at: datetime | None) -> PriceTable | None:
        for constraint, prices in self.latest_first:
            if constraint is None:
                return prices
            at = at or datetime.now(tz=UTC)
            if constraint.active(at):
                return prices
        return self.when_none_applies


@cache
def _bundled_providers() -> list[Provider]:
    # Imported on first use, so modules that import this one but never price stay quick to load.
    from genai_prices.data import providers

    return providers


@lru_cache(maxsize=4096)
def _price_schedule(provider_id: str | None, base_url: str | None, model: str) -> _PriceSchedule | None:
    model_info = _catalogue_model(provider_id, base_url, model)
    return None if model_info is None else _schedule_from_model(model_info)


def catalogue_model_id(*, provider_id: str | None, base_url: str | None, model: str) -> str | None:
    """The catalogue's own id for the model a request names (aliases and dated versions resolved), or None
    when the catalogue does not know it: one of a bounded set of names, whatever the request said."""
    model_info = _catalogue_model(provider_id, base_url, model)
    return None if model_info is None else model_info.id


@lru_cache(maxsize=4096)
def _catalogue_model(provider_id: str | None, base_url: str | None, model: str) -> ModelInfo | None:
    # Shared by pricing and metric labels, so a model is looked up in the catalogue once.
    return _find_model_or_none(provider_id, base_url, model)


def _find_model_or_none(provider_id: str | None, base_url: str | None, model: str) -> ModelInfo | None:
    try:
        model_ref = model.strip().lower()
        provider = _find_provider(provider_id, base_url, model_ref)
        return (
            None if provider is None else provider.find_model(model_ref, all_providers=_bundled_providers())
        )
    except Exception:
        logger.exception("Could not look up %r for provider %r in the price catalogue", model, provider_id)
        return None


def _find_provider(provider_id: str | None, base_url: str | None, model_ref: str) -> Provider | None:
    providers = _bundled_providers()
    if provider_id and (provider := find_provider_by_id(providers, provider_id)):
        return provider
    if base_url:
        for provider in providers:
            if re.match(provider.api_pattern, base_url):
                return provider
    for provider in providers:
        if provider.model_match is not None and provider.model_match.is_match(model_ref):
            return provider
    return None


def _schedule_from_model(model_info: ModelInfo) -> _PriceSchedule:
    if isinstance(model_info.prices, ModelPrice):
        prices = _table_from_model_price(model_info.prices)
        return _PriceSchedule(latest_first=((None, prices),), when_none_applies=prices)
    conditional = [(price.constraint, _table_from_model_price(price.prices)) for price in model_info.prices]
    return _PriceSchedule(latest_first=tuple(reversed(conditional)), when_none_applies=conditional[0][1])


def _table_from_model_price(model_price: ModelPrice) -> PriceTable | None:
    values = {key: getattr(model_price, key, None) for key in _USED_PRICE_KEYS}
    if all(value is None for value in values.values()):
        return _FREE if not _has_any_price(model_price) else None
    tier_starts = sorted(
        {tier.start for value in values.values() if isinstance(value, TieredPrices) for tier in value.tiers}
    )
    return replace(
        _flat_table(values, total_input_tokens=0),
        long_context=tuple(
            LongContextTier(start, _flat_table(values, total_input_tokens=start + 1)) for start in tier_starts
        ),
    )


def _flat_table(values: Mapping[str, _CatalogueValue], *, total_input_tokens: int) -> PriceTable:
    def rate(key: str, fallback: Decimal) -> Decimal:
        price = _catalogue_rate(values[key], total_input_tokens)
        return fallback if price is None else price

    input_price = rate(_INPUT, _ZERO)
    output_price = rate(_OUTPUT, _ZERO)
    cache_write_price = rate(_CACHE_WRITE, input_price)
    return PriceTable(
        input_per_mtok=input_price,
        output_per_mtok=output_price,
        cached_input_per_mtok=rate(_CACHE_READ, input_price),
        cache_write_per_mtok=cache_write_price,
        cache_write_1h_per_mtok=rate(_CACHE_WRITE_1H, cache_write_price),
        reasoning_per_mtok=rate(_REASONING, output_price),
        per_request_usd=rate(_PER_THOUSAND_REQUESTS, _ZERO) / _THOUSAND,
    )


def _catalogue_rate(value: _CatalogueValue, total_input_tokens: int) -> Decimal | None:
    """The rate genai-prices' `calc_unit_price` charges for a call with this many input tokens."""
    if not isinstance(value, TieredPrices):
        return value
    for tier in reversed(value.tiers):
        if total_input_tokens > tier.start:
            return tier.price
    return value.base


def _has_any_price(model_price: ModelPrice) -> bool:
    return any(value is not None for key, value in vars(model_price).items() if not key.startswith("_"))


_FREE = PriceTable(
    input_per_mtok=_ZERO,
    output_per_mtok=_ZERO,
    cached_input_per_mtok=_ZERO,
    cache_write_per_mtok=_ZERO,
    cache_write_1h_per_mtok=_ZERO,
    reasoning_per_mtok=_ZERO,
)


# --- Overrides --------------------------------------------------------------------------------------------

# Wide enough for any plausible negotiated or self-hosted price, narrow enough that a price typed per token
# (a millionth of the intended one) falls below the floor for every price in the catalogue.
_TOO_CHEAP_FACTOR = Decimal(10)
_TOO_DEAR_FACTOR = Decimal(100)
_OWN_PRICE_FACTOR = Decimal(100)

_CATALOGUE_KEY_BY_OVERRIDE_FIELD = {
    "input_per_mtok": _INPUT,
    "output_per_mtok": _OUTPUT,
    "cached_input_per_mtok": _CACHE_READ,
    "cache_write_per_mtok": _CACHE_WRITE,
    "cache_write_1h_per_mtok": _CACHE_WRITE_1H,
}


@dataclass(frozen=True, slots=True)
class _PriceRange:
    cheapest: Decimal
    dearest: Decimal

    def contains(self, price: Decimal) -> bool:
        return self.cheapest / _TOO_CHEAP_FACTOR <= price <= self.dearest * _TOO_DEAR_FACTOR


def _override_price_problem(
    field: str, value: PriceInput, model: str, catalogue: PriceTable | None
) -> str | None:
    try:
        price = _parse_price(field, value)
    except ValueError as exc:
        return str(exc)
    if price == 0:
        return None
    known = _catalogue_price_ranges()[_CATALOGUE_KEY_BY_OVERRIDE_FIELD[field]]
    if price < known.cheapest / _TOO_CHEAP_FACTOR:
        return (
            f"{field}: ${_plain(price)} per million tokens is under 1/{_TOO_CHEAP_FACTOR} of the cheapest "
            f"such price in the catalogue (${_plain(known.cheapest)}); prices are per million tokens, "
            f"not per token{_did_you_mean(price * _MILLION, known)}"
        )
    if price > known.dearest * _TOO_DEAR_FACTOR:
        return (
            f"{field}: ${_plain(price)} per million tokens is over {_TOO_DEAR_FACTOR}× the dearest such "
            f"price in the catalogue (${_plain(known.dearest)}){_did_you_mean(price / _MILLION, known)}"
        )
    own_price: Decimal | None = None if catalogue is None else getattr(catalogue, field)
    if own_price and not own_price / _OWN_PRICE_FACTOR <= price <= own_price * _OWN_PRICE_FACTOR:
        return (
            f"{field}: ${_plain(price)} per million tokens is more than {_OWN_PRICE_FACTOR}× away from "
            f"the catalogue's price for {model} (${_plain(own_price)} per million tokens)"
        )
    return None


def _did_you_mean(candidate: Decimal, known: _PriceRange) -> str:
    return f"; did you mean {_plain(candidate)}?" if known.contains(candidate) else ""


@cache
def _catalogue_price_ranges() -> dict[str, _PriceRange]:
    """Cheapest (above zero) and dearest rate of each price kind over every model in the catalogue."""
    rates: dict[str, list[Decimal]] = {key: [] for key in _CATALOGUE_KEY_BY_OVERRIDE_FIELD.values()}
    for model_price in _every_catalogue_model_price():
        for key, found in rates.items():
            found.extend(rate for rate in _all_rates(getattr(model_price, key, None)) if rate > 0)
    return {key: _PriceRange(min(found), max(found)) for key, found in rates.items()}


def _every_catalogue_model_price() -> Iterator[ModelPrice]:
    for provider in _bundled_providers():
        for model_info in provider.models:
            if isinstance(model_info.prices, ModelPrice):
                yield model_info.prices
            else:
                yield from (price.prices for price in model_info.prices)


def _all_rates(value: _CatalogueValue) -> list[Decimal]:
    if isinstance(value, TieredPrices):
        return [value.base, *(tier.price for tier in value.tiers)]
    return [] if value is None else [value]


def _parse_price(field: str, value: PriceInput) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{field}: {value!r} is not a price")
    try:
        # str() first so 0.1 (a float from YAML) becomes Decimal('0.1'), not its binary approximation.
        price = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, TypeError):
        raise ValueError(f"{field}: {value!r} is not a number") from None
    if not price.is_finite():
        raise ValueError(f"{field}: {value!r} is not a finite number")
    if price < 0:
        raise ValueError(f"{field}: {_plain(price)} is negative; prices are US dollars per million tokens")
    return price


def _parse_optional_price(field: str, value: PriceInput | None, fallback: Decimal) -> Decimal:
    return fallback if value is None else _parse_price(field, value)


def _plain(amount: Decimal) -> str:
    """`amount` without exponent notation or trailing zeros: 0.000003, 3, 3000000."""
    return f"{amount.normalize():f}"

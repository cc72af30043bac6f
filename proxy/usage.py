"""Token counts of one call, normalised across providers (CONTRACT §4)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(slots=True)
class TokenUsage:
    """Normalised usage.

    `input_tokens` is *all* input: for Anthropic, input + cache creation + cache read.
    `cached_input_tokens` (cache reads) and `cache_write_tokens` are parts of it, and
    `cache_write_1h_tokens` is the part of `cache_write_tokens` written at the 1-hour rate.
    `output_tokens` includes `reasoning_tokens`.
    `provider_cost_usd` is what the provider says the call cost (OpenRouter, Perplexity), kept beside ours,
    never charged.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    provider_cost_usd: Decimal | None = None

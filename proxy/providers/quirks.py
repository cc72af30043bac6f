"""How OpenAI-compatible providers' usage differs from OpenAI's: one row a provider, read by `chat_usage`.

Every row is looked for in every OpenAI-format answer (a field name is the provider's own, and a gateway
in front of a provider passes its fields on), so no row needs to know which endpoint the call went to:

- DeepSeek counts cache hits in `prompt_cache_hit_tokens` (its `prompt_tokens` is hits + misses);
- Groq streams usage in the last chunk's `x_groq.usage` (and, asked for it, in `usage` too);
- Perplexity reports `reasoning_tokens` (sonar-deep-research) beside `completion_tokens`, not inside it
  (its `total_tokens` leaves them out), and its own cost in `usage.cost.total_cost`;
- OpenRouter reports what it charged, in dollar credits, in `usage.cost`.
Mistral, Together and Fireworks report OpenAI's fields (Fireworks' cache hits in
`prompt_tokens_details.cached_tokens`); streamed, Mistral and Together put the usage on the chunk that
finishes the choice rather than on a chunk of its own, which the chat stream reader already reads.

A provider's own cost is never what the call is charged: it is kept beside ours on the record, and a call
whose two costs disagree is counted and logged (proxy/call_record.py), since a disagreement means a unit,
a price or a count is wrong on one side.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from ..usage_bounds import MAX_COST_USD


class UsageQuirk(NamedTuple):
    """Paths (keys from the `usage` object, or from the chunk for `stream_usage`) to a provider's fields."""

    provider: str
    cached_input: tuple[str, ...] = ()  # cache hits, a part of prompt_tokens
    separate_reasoning: tuple[str, ...] = ()  # reasoning tokens billed beside completion_tokens
    provider_cost: tuple[str, ...] = ()  # the provider's own cost of the call, in US dollars
    stream_usage: tuple[str, ...] = ()  # where a chunk holds its usage when not in `usage`


QUIRKS: tuple[UsageQuirk, ...] = (
    UsageQuirk("deepseek", cached_input=("prompt_cache_hit_tokens",)),
    UsageQuirk("groq", stream_usage=("x_groq", "usage")),
    UsageQuirk("perplexity", separate_reasoning=("reasoning_tokens",), provider_cost=("cost", "total_cost")),
    UsageQuirk("openrouter", provider_cost=("cost",)),
)
CACHED_INPUT_PATHS = tuple(q.cached_input for q in QUIRKS if q.cached_input)
SEPARATE_REASONING_PATHS = tuple(q.separate_reasoning for q in QUIRKS if q.separate_reasoning)
PROVIDER_COST_PATHS = tuple(q.provider_cost for q in QUIRKS if q.provider_cost)
STREAM_USAGE_PATHS = tuple(q.stream_usage for q in QUIRKS if q.stream_usage)


def dig(mapping: object, path: tuple[str, ...]) -> object:
    """The value at `path` in nested objects, None where any step is missing or not an object."""
    value = mapping
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def provider_cost(usage: dict[str, object]) -> Decimal | None:
    """The cost the provider reports for the call, bounded like ours; None when it reports none (or nonsense)."""
    for path in PROVIDER_COST_PATHS:
        if path[0] not in usage:
            continue  # the usual answer: no provider cost at all, found without walking a path
        value = dig(usage, path)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        try:
            cost = Decimal(str(value))
        except InvalidOperation:
            continue
        if cost.is_finite() and 0 <= cost <= MAX_COST_USD:
            return cost.quantize(Decimal("0.000000001"))
    return None

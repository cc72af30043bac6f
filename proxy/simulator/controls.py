"""Per-request test controls, read from `X-Sim-*` request headers (the proxy forwards unknown
headers, so a test sets them through the SDKs' `extra_headers`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .content import MAX_REPLY_WORDS

LATENCY_MS = "X-Sim-Latency-Ms"
CHUNK_DELAY_MS = "X-Sim-Chunk-Delay-Ms"
STATUS = "X-Sim-Status"
FIXTURE = "X-Sim-Fixture"
HOLD = "X-Sim-Hold"
DROP_AFTER = "X-Sim-Drop-After"
DROP_BODY_AFTER = "X-Sim-Drop-Body-After"
WORDS = "X-Sim-Words"
CACHED_TOKENS = "X-Sim-Cached-Tokens"
CACHE_WRITE_TOKENS = "X-Sim-Cache-Write-Tokens"
CACHE_WRITE_1H_TOKENS = "X-Sim-Cache-Write-1h-Tokens"
REASONING_TOKENS = "X-Sim-Reasoning-Tokens"
PROMPT_TOKENS = "X-Sim-Prompt-Tokens"
TOOL_USE_PROMPT_TOKENS = "X-Sim-Tool-Use-Prompt-Tokens"
USAGE_ON_LAST_CHOICE = "X-Sim-Extra-Usage-Choice"
SERVED_MODEL = "X-Sim-Served-Model"  # the model the answer names, as Azure names a deployment's model
# Failures for routing tests: X-Sim-Status only for requests naming this model (others answer normally)…
FAIL_MODEL = "X-Sim-Fail-Model"
# …only for the first N requests carrying the same X-Sim-Fail-Key (then normally)…
FAIL_TIMES = "X-Sim-Fail-Times"
FAIL_KEY = "X-Sim-Fail-Key"
# …and with this Retry-After header on the error.
RETRY_AFTER = "X-Sim-Retry-After"


class ControlError(ValueError):
    """An `X-Sim-*` header the simulator cannot read: a mistake in the test, answered with 400."""


@dataclass(slots=True, frozen=True)
class Controls:
    latency_ms: float
    chunk_delay_ms: float
    status: int | None
    fixture: str | None
    hold: str | None
    drop_after: int | None
    drop_body_after: int | None
    words: int
    cached_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    usage_on_last_choice: bool
    prompt_tokens: int | None = None
    tool_use_prompt_tokens: int = 0
    served_model: str | None = None
    fail_model: str | None = None
    fail_times: int | None = None
    fail_key: str = ""
    retry_after: str | None = None


def read_controls(
    headers: Mapping[str, str], *, latency_ms: float, chunk_delay_ms: float, words: int
) -> Controls:
    get = headers.get
    status = _count(get(STATUS), STATUS)
    words_asked = _count(get(WORDS), WORDS)
    if words_asked is not None and words_asked > MAX_REPLY_WORDS:
        raise ControlError(f"{WORDS} must be at most {MAX_REPLY_WORDS}")
    return Controls(
        latency_ms=_milliseconds(get(LATENCY_MS), LATENCY_MS, latency_ms),
        chunk_delay_ms=_milliseconds(get(CHUNK_DELAY_MS), CHUNK_DELAY_MS, chunk_delay_ms),
        status=status if status is not None and status >= 400 else None,
        fixture=get(FIXTURE) or None,
        hold=get(HOLD) or None,
        drop_after=_count(get(DROP_AFTER), DROP_AFTER),
        drop_body_after=_count(get(DROP_BODY_AFTER), DROP_BODY_AFTER),
        words=words if words_asked is None else words_asked,
        cached_tokens=_count(get(CACHED_TOKENS), CACHED_TOKENS) or 0,
        cache_write_tokens=_count(get(CACHE_WRITE_TOKENS), CACHE_WRITE_TOKENS) or 0,
        cache_write_1h_tokens=_count(get(CACHE_WRITE_1H_TOKENS), CACHE_WRITE_1H_TOKENS) or 0,
        reasoning_tokens=_count(get(REASONING_TOKENS), REASONING_TOKENS) or 0,
        usage_on_last_choice=get(USAGE_ON_LAST_CHOICE, "").strip().lower() in ("1", "true", "yes"),
        prompt_tokens=_count(get(PROMPT_TOKENS), PROMPT_TOKENS),
        tool_use_prompt_tokens=_count(get(TOOL_USE_PROMPT_TOKENS), TOOL_USE_PROMPT_TOKENS) or 0,
        served_model=get(SERVED_MODEL) or None,
        fail_model=get(FAIL_MODEL) or None,
        fail_times=_count(get(FAIL_TIMES), FAIL_TIMES),
        fail_key=get(FAIL_KEY, "")[:100],
        retry_after=get(RETRY_AFTER) or None,
    )


def _count(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ControlError(f"{name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise ControlError(f"{name} must not be negative")
    return number


def _milliseconds(value: str | None, name: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ControlError(f"{name} must be a number of milliseconds, not {value!r}") from None
    if not number >= 0:  # also refuses NaN
        raise ControlError(f"{name} must not be negative")
    return number

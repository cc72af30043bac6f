"""Prometheus metrics (CONTRACT §5). Labels stay bounded: tenant is never a label."""

from __future__ import annotations

import math
import re
import threading
from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

LABELS = ("provider", "model", "feature", "environment", "status")

requests_total = Counter("tokonomics_requests", "Proxied calls.", LABELS)
tokens_total = Counter("tokonomics_tokens", "Tokens, by type.", (*LABELS, "type"))
cost_usd_total = Counter("tokonomics_cost_usd", "Spend in USD (known prices only).", LABELS)
# Per account by its slug, which an admin sets (never a client): one series per account, for dashboards.
account_cost_usd_total = Counter("tokonomics_account_cost_usd", "Spend in USD per account (known prices only).",
                                 ("account",))
proxy_overhead_seconds = Histogram(
    "tokonomics_proxy_overhead_seconds",
    "Time spent inside the proxy, upstream excluded.",
    ("provider", "streamed"),
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
upstream_seconds = Histogram(
    "tokonomics_upstream_seconds",
    "Upstream time, from sending the request to the last byte.",
    ("provider", "streamed"),
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
budget_denials_total = Counter("tokonomics_budget_denials", "Calls denied before the upstream.", ("scope",))
errors_total = Counter("tokonomics_errors", "Calls that failed in or behind the proxy.", ("provider", "kind"))
estimated_usage_total = Counter(
    "tokonomics_estimated_usage", "Records whose usage was estimated (stream cut short, no usage).", ("provider",)
)
provider_cost_mismatch_total = Counter(
    "tokonomics_provider_cost_mismatch", "Calls whose provider-reported cost disagrees with Tokonomics' price.",
    ("provider",),
)
unknown_price_total = Counter("tokonomics_unknown_price", "Calls whose model has no known price.", ("provider",))
unenforced_total = Counter("tokonomics_unenforced", "Calls let through while Redis was unreachable.", ("provider",))
cache_lookups_total = Counter("tokonomics_cache_lookups", "Response cache lookups of cacheable calls, by result "
                              "(hit: answered from the cache; miss: sent upstream).", ("provider", "result"))
cache_saved_usd_total = Counter("tokonomics_cache_saved_usd", "What cache hits would have cost upstream, in USD.",
                                ("provider",))
cache_stored_total = Counter("tokonomics_cache_stored", "Answers kept in the response cache.", ("provider",))
reserved_usd_total = Counter("tokonomics_reserved_usd", "Estimates reserved before calls.", ("provider",))
# Rule ids are slugs an account admin sets (≤ 50 rules a policy) and actions a fixed set: never client data.
guardrail_hits_total = Counter("tokonomics_guardrail_hits", "Guardrail rule matches, by rule id and action.",
                               ("rule", "action"))
# Set when a process's Redis breaker opens or closes (rare: never per call). With several workers the
# highest live value wins: 1 if any worker is skipping Redis.
redis_breaker_open = Gauge("tokonomics_redis_breaker_open", "1 while the Redis circuit breaker is open "
                           "(budgets unenforced while it is).", multiprocess_mode="livemax")
redis_breaker_opens_total = Counter("tokonomics_redis_breaker_opens", "Times the Redis circuit breaker opened.")
# Budget leases (proxy/leases.py): room this worker holds and has not spent, set after each lease batch;
# summed over live workers. `scope` is a budget scope (account_budget, tenant_budget, …): bounded.
lease_room_usd = Gauge("tokonomics_lease_room_usd", "Budget room leased by proxy workers and not spent yet.",
                       ("scope",), multiprocess_mode="livesum")
lease_room_requests = Gauge("tokonomics_lease_room_requests", "Plan requests leased by proxy workers and not "
                            "used yet.", multiprocess_mode="livesum")
lease_admissions_total = Counter("tokonomics_lease_admissions", "Calls admitted, by how: `lease` (no Redis "
                                 "round trip) or `redis` (reserve_call.lua).", ("path",))

TOKEN_TYPES = ("input", "output", "cached_input", "cache_write", "reasoning")

# Labels fed by clients. `provider` and `model` are mapped to configured endpoints and known models by the
# gateway (else UNKNOWN); `feature` and `environment` are free-form headers, so they are cleaned and capped
# here. Every label value is a series in every worker's /metrics for the life of the process, and a
# Prometheus server stores each one: a client that could mint values could bloat every scrape and the
# monitoring behind it (CONTRACT §1: what a client sends never adds series).
UNKNOWN = "unknown"
OTHER = "other"
FEATURE_LIMIT = 100  # distinct features per process; past it, new ones share OTHER
ENVIRONMENT_LIMIT = 20
LABEL_MAX_CHARS = 100
# Distinct (provider, model, feature, environment, status) sets per process: each cap above is bounded on
# its own, but not their product. Past this many, new sets keep provider and status only.
MAX_LABEL_SETS = 2_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 and DEL; not C1, the bytes of UTF-8 text read as latin-1


class BoundedLabel:
    """A label whose values come from a client header: control characters removed (a scrape is text, and
    an operator reads it in a terminal), cut to LABEL_MAX_CHARS, and past `limit` distinct values new ones
    share OTHER, so no caller can grow the series set forever. "" (no header) stays ""."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if not value:
            return value
        value = _CONTROL.sub("", value)[:LABEL_MAX_CHARS]
        if value in self.seen:
            return value
        if value and len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


feature_label = BoundedLabel(FEATURE_LIMIT)
environment_label = BoundedLabel(ENVIRONMENT_LIMIT)
_label_sets: set[tuple[str, ...]] = set()


def bounded_labels(provider: str, model: str, feature: str, environment: str, status: str) -> tuple[str, ...]:
    labels = (provider, model, feature_label(feature), environment_label(environment), status)
    if labels not in _label_sets:
        if len(_label_sets) >= MAX_LABEL_SETS:
            return (provider, OTHER, OTHER, OTHER, status)
        _label_sets.add(labels)
    return labels


class _Batch:
    """Increments made on the hot path, handed to Prometheus once a second (`flush`). With several workers
    every Prometheus increment writes a shared memory-mapped file under a lock, about 5 µs; a call makes
    up to ten, and a batch turns a second's worth into one per series."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the proxy's loop adds, a /metrics view in another thread may flush
        self.counts: dict[Any, float] = {}
        self.histograms: dict[Any, list[float]] = {}  # child → [sum, count in bucket 0, bucket 1, …]


_batch = _Batch()


def add(child: Any, amount: float = 1.0) -> None:
    """`child.inc(amount)`, batched."""
    with _batch.lock:
        _batch.counts[child] = _batch.counts.get(child, 0.0) + amount


def observe(child: Any, value: float) -> None:
    """`child.observe(value)`, batched."""
    with _batch.lock:
        sums = _batch.histograms.get(child)
        if sums is None:
            sums = _batch.histograms[child] = [0.0] * (len(child._upper_bounds) + 1)
        sums[0] += value
        sums[1 + bisect_left(child._upper_bounds, value)] += 1


def flush() -> None:
    """Hand the batched increments to Prometheus (the proxy does it every second, /metrics before answering)."""
    with _batch.lock:
        counts, _batch.counts = _batch.counts, {}
        histograms, _batch.histograms = _batch.histograms, {}
    for child, amount in counts.items():
        if 0 <= amount < math.inf:  # a counter only goes up; one bad amount must not cost the batch
            child.inc(amount)
    for child, sums in histograms.items():
        # What Histogram.observe does per observation (bucket counts are stored per bucket, not cumulated).
        child._sum.inc(sums[0])
        for bucket, count in zip(child._buckets, sums[1:], strict=True):
            if count:
                bucket.inc(count)


class CallSeries:
    """The labelled series one kind of call updates, looked up once instead of on every call
    (`labels()` costs a few microseconds each, and a call touches up to eight series)."""

    __slots__ = ("requests", "cost", "tokens", "overhead", "upstream", "_labels")

    def __init__(self, provider: str, model: str, feature: str, environment: str, status: str, streamed: str) -> None:
        self._labels = bounded_labels(provider, model, feature, environment, status)
        self.requests = requests_total.labels(*self._labels)
        self.cost = cost_usd_total.labels(*self._labels)
        self.tokens: dict[str, Any] = {}
        self.overhead = proxy_overhead_seconds.labels(provider, streamed)
        self.upstream = upstream_seconds.labels(provider, streamed)

    def token_series(self, kind: str) -> Any:
        child = self.tokens.get(kind)
        if child is None:
            child = self.tokens[kind] = tokens_total.labels(*self._labels, kind)
        return child


# Bounded: past this many distinct kinds of call the cache starts over (the series themselves remain).
MAX_CACHED_SERIES = 10_000
_series: dict[tuple[str, str, str, str, int, bool], CallSeries] = {}


_account_series: dict[str, Any] = {}


def account_cost_series(slug: str) -> Any:
    series = _account_series.get(slug)
    if series is None:
        if len(_account_series) >= MAX_CACHED_SERIES:
            _account_series.clear()
        series = _account_series[slug] = account_cost_usd_total.labels(slug or "unknown")
    return series


def call_series(provider: str, model: str, feature: str, environment: str, status: int, streamed: bool) -> CallSeries:
    key = (provider, model, feature, environment, status, streamed)
    series = _series.get(key)
    if series is None:
        if len(_series) >= MAX_CACHED_SERIES:
            _series.clear()
        series = _series[key] = CallSeries(provider, model, feature, environment, str(status),
                                           "true" if streamed else "false")
    return series


_reserved: dict[str, Any] = {}


def reserved_usd(provider: str) -> Any:
    child = _reserved.get(provider)
    if child is None:
        child = _reserved[provider] = reserved_usd_total.labels(provider)
    return child


_cache_series: dict[tuple[str, str], Any] = {}


def cache_lookup_series(provider: str, result: str) -> Any:
    """`provider` is an endpoint of the caller's account (Call.provider_label), never a client's string."""
    child = _cache_series.get((provider, result))
    if child is None:
        child = _cache_series[(provider, result)] = cache_lookups_total.labels(provider, result)
    return child


def cache_saved_series(provider: str) -> Any:
    child = _cache_series.get((provider, "saved"))
    if child is None:
        child = _cache_series[(provider, "saved")] = cache_saved_usd_total.labels(provider)
    return child


def cache_stored_series(provider: str) -> Any:
    child = _cache_series.get((provider, "stored"))
    if child is None:
        child = _cache_series[(provider, "stored")] = cache_stored_total.labels(provider)
    return child

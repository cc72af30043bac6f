"""Prometheus metrics (CONTRACT §5). Labels stay bounded: tenant is never a label."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

LABELS = ("provider", "model", "feature", "environment", "status")

requests_total = Counter("tokonomics_requests", "Proxied calls.", LABELS)
tokens_total = Counter("tokonomics_tokens", "Tokens, by type.", (*LABELS, "type"))
cost_usd_total = Counter("tokonomics_cost_usd", "Spend in USD (known prices only).", LABELS)
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
unknown_price_total = Counter("tokonomics_unknown_price", "Calls whose model has no known price.", ("provider",))
unenforced_total = Counter("tokonomics_unenforced", "Calls let through while Redis was unreachable.", ("provider",))
reserved_usd_total = Counter("tokonomics_reserved_usd", "Estimates reserved before calls.", ("provider",))

TOKEN_TYPES = ("input", "output", "cached_input", "cache_write", "reasoning")



class BoundedLabel:
    """A label whose values come from callers (the model in a body, the feature and environment headers):
    past `limit` distinct values, new ones share the value `_other`, so no caller can grow the series
    set forever."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen or not value:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return "_other"


model_label = BoundedLabel(200)
feature_label = BoundedLabel(200)
environment_label = BoundedLabel(50)


class CallSeries:
    """The labelled series one kind of call updates, looked up once instead of on every call
    (`labels()` costs a few microseconds each, and a call touches up to eight series)."""

    __slots__ = ("requests", "cost", "tokens", "overhead", "upstream", "_labels")

    def __init__(self, provider: str, model: str, feature: str, environment: str, status: str, streamed: str) -> None:
        self._labels = (provider, model_label(model), feature_label(feature), environment_label(environment), status)
        self.requests = requests_total.labels(*self._labels)
        self.cost = cost_usd_total.labels(*self._labels)
        self.tokens: dict[str, Any] = {}
        self.overhead = proxy_overhead_seconds.labels(provider, streamed)
        self.upstream = upstream_seconds.labels(provider, streamed)

    def add_tokens(self, kind: str, amount: int) -> None:
        child = self.tokens.get(kind)
        if child is None:
            child = self.tokens[kind] = tokens_total.labels(*self._labels, kind)
        child.inc(amount)


# Bounded: past this many distinct kinds of call the cache starts over (the series themselves remain).
MAX_CACHED_SERIES = 10_000
_series: dict[tuple[str, str, str, str, int, bool], CallSeries] = {}


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

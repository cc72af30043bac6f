"""Prometheus metrics (CONTRACT §5). Labels stay bounded: tenant is never a label."""

from __future__ import annotations

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

# A feature header is free text; past this many distinct values new ones share one label.
MAX_FEATURE_LABELS = 200
_features: set[str] = set()


def feature_label(feature: str) -> str:
    if feature in _features or not feature:
        return feature
    if len(_features) < MAX_FEATURE_LABELS:
        _features.add(feature)
        return feature
    return "_other"

MAX_MODEL_LABELS = 200
_models: set[str] = set()


def model_label(model: str) -> str:
    # The model comes from the request body: a caller must not be able to grow the label set forever.
    if model in _models or not model:
        return model
    if len(_models) < MAX_MODEL_LABELS:
        _models.add(model)
        return model
    return "_other"

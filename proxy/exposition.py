"""What /metrics answers, for the web app's Django view and the proxy worker's plain ASGI route alike."""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from . import metrics
from .ledger_metrics import ledger_text

CONTENT_TYPE = CONTENT_TYPE_LATEST


def metrics_authorized(authorization: str) -> bool:
    """True when no token is configured, or the `Authorization` header carries it as a bearer token."""
    token = settings.TOKONOMICS_METRICS_TOKEN
    if not token:
        return True
    given = authorization.removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


def metrics_text() -> bytes:
    metrics.flush()  # this process's latest calls too, not only what its proxy flushed a second ago
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several workers: add up what each process wrote to the shared directory.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client leaves it untyped
    return generate_latest(registry) + ledger_text()


def metrics_process_stopped() -> None:
    """A worker stopping: its "live" gauges (the Redis breaker) leave the shared directory, so a worker that
    stopped with its breaker open does not read as open for ever."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]  # untyped in prometheus_client

"""The hostile suite's targets: the proxy called in this process, and the proxy worker under uvicorn in
a process of its own, each in front of the recording simulator, with a Judge ready to run cases."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future

import httpx
import pytest
from hypothesis import HealthCheck, settings

from ..support import KEY, ProxyProcess
from .drive import AsgiDriver, Reply, raw_request
from .invariants import Judge
from .strategies import Case
from .world import RecordingSimulator, world_build

# Bounded and repeatable: the whole package stays well under two minutes on two busy cores, and a
# failure found once is found again (no example database, no randomness between runs).
BOUNDED = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                           HealthCheck.filter_too_much],
)
MAX_BODY_BYTES = 256 * 1024  # small, so that "huge" bodies meet the limit without moving 32 MiB
METRICS_TOKEN = "hostile-scrape"


def with_key(case: Case, key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode()), *case.headers]


class InProcess:
    settles_late = False

    def __init__(self, driver: AsgiDriver) -> None:
        self.driver = driver

    def send(self, case: Case, *, key: str = KEY) -> Reply:
        return self.start(case, key=key).result(60)

    def start(self, case: Case, *, key: str = KEY) -> Future[Reply]:
        return self.driver.start(case.method, case.raw_path, query=case.query, headers=with_key(case, key),
                                 body=case.body)

    def metrics_text(self) -> str:
        from proxy.exposition import metrics_text

        return metrics_text().decode()

    def redis_trouble(self) -> str:
        from proxy import context

        ctx = context._context
        if ctx is None:
            return ""
        trouble = [f"{what} {count}" for what, count in (
            ("failed Redis round trips:", ctx.quota.breaker.failures), ("deferred settles:", len(ctx.quota.deferred)),
            ("usage events waiting for Redis:", len(ctx.pending_events))) if count]
        return ", ".join(trouble)


class UnderUvicorn:
    settles_late = True

    def __init__(self, process: ProxyProcess) -> None:
        self.process = process

    def send(self, case: Case, *, key: str = KEY) -> Reply:
        target = case.raw_path + (b"?" + case.query if case.query else b"")
        return raw_request(self.process.port, case.method, target, headers=with_key(case, key), body=case.body)

    def metrics_text(self) -> str:
        scraped = httpx.get(f"{self.process.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        scraped.raise_for_status()
        return scraped.text

    def redis_trouble(self) -> str:
        return ""  # another process: what it deferred shows as records late or missing


@pytest.fixture
def recording_simulator() -> Iterator[RecordingSimulator]:
    with RecordingSimulator() as sim:
        yield sim


@pytest.fixture
def in_process(transactional_db, plans, recording_simulator, settings) -> Iterator[Judge]:
    settings.TOKONOMICS_MAX_BODY_BYTES = MAX_BODY_BYTES
    # Redis is healthy here: a slow answer on a busy machine must not pass for an outage.
    settings.TOKONOMICS_REDIS_TIMEOUT = 5.0
    world = world_build(recording_simulator, plans)
    with AsgiDriver() as driver:
        yield Judge(world, InProcess(driver))


@pytest.fixture
def under_uvicorn(transactional_db, plans, recording_simulator) -> Iterator[Judge]:
    world = world_build(recording_simulator, plans)
    with ProxyProcess("tokonomics.proxy_asgi:application", TOKONOMICS_METRICS_TOKEN=METRICS_TOKEN,
                      TOKONOMICS_MAX_BODY_BYTES=str(MAX_BODY_BYTES), TOKONOMICS_REDIS_TIMEOUT="5") as process:
        yield Judge(world, UnderUvicorn(process))

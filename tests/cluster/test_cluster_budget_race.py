"""The budget race on a Redis Cluster: 200 concurrent calls over two proxy processes, exactly what fits
admitted (the reserve and settle scripts run on the master owning the account's slot)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ..proxy.test_budget_race import (
    CALL_COST,
    CONCURRENT,
    FITS,
    account_budget,
    assert_exactly_fits,
    burst,
    exact_prices,
)
from ..support import ProxyProcess, Stack
from .conftest import LocalCluster, cluster_process_env


@pytest.fixture
def patient_redis_client(settings) -> None:
    """Before `stack` (see tests/proxy/test_budget_race.py): a 200-call burst opening its connections at once
    on this small box is not the outage tests/cluster/test_cluster_failover.py is about."""
    settings.TOKONOMICS_REDIS_TIMEOUT = 3.0


@pytest.fixture
def second_proxy(patient_redis_client: None, on_cluster: LocalCluster, stack: Stack) -> Iterator[str]:
    with ProxyProcess("tokonomics.proxy_asgi:application", **cluster_process_env(on_cluster)) as process:
        yield process.url


def test_two_proxy_processes_on_a_cluster_admit_exactly_what_fits(
    patient_redis_client: None, on_cluster: LocalCluster, stack: Stack, second_proxy: str
) -> None:
    exact_prices(stack)
    budget = account_budget(stack, FITS * CALL_COST)
    responses = asyncio.run(burst([stack.proxy, second_proxy], CONCURRENT))
    assert_exactly_fits(responses, budget)

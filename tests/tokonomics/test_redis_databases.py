"""Which databases of the shared Redis the tests take: bin/test, parallel workers, the benchmark and the
README agree, and none of them reaches bin/run's database 0 or past 15."""

from __future__ import annotations

import re

from tools.bench.environment import REDIS_DBS as BENCHMARK_DBS

from ..support import REPO, TEST_REDIS_DBS, worker_redis_db


def test_bin_test_picks_a_database_the_tests_may_use() -> None:
    script = (REPO / "bin" / "test").read_text()
    modulus, first = map(int, re.search(r"\$\(\( \$\$ % (\d+) \+ (\d+) \)\)", script).groups())
    assert {pid % modulus + first for pid in range(modulus)} == set(TEST_REDIS_DBS)


def test_workers_stay_apart_from_bin_run_and_the_benchmark() -> None:
    assert set(TEST_REDIS_DBS).isdisjoint({0, *BENCHMARK_DBS}) and max(*TEST_REDIS_DBS, *BENCHMARK_DBS) <= 15
    for run_db in TEST_REDIS_DBS:
        assert worker_redis_db(run_db, 0) == run_db
        workers = [worker_redis_db(run_db, worker) for worker in range(len(TEST_REDIS_DBS))]
        assert sorted(workers) == list(TEST_REDIS_DBS)  # as many workers as databases: each its own


def test_the_readme_names_the_same_databases() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"Redis databases {TEST_REDIS_DBS.start} to {TEST_REDIS_DBS.stop - 1}" in readme
    assert f"{min(BENCHMARK_DBS)} to {max(BENCHMARK_DBS)}" in readme

"""A real Redis Cluster for the tests of this directory: 3 masters and 3 replicas on 6 consecutive free loopback
ports from 20000 (bus ports 10000 above), started once per session in a temporary directory and killed at the end.
Skipped only where redis-server was built without cluster support.

Every test here points REDIS_URL at the cluster (redis+cluster://…) for itself and for the proxy processes
it starts; Celery's broker stays on the single test Redis (a cluster cannot be Celery's broker).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from tokonomics.redis_client import sync_redis

from ..support import wait_until


def _free_ports(count: int = 6) -> tuple[int, ...]:
    """`count` consecutive loopback ports, free with their cluster bus ports (port + 10000): never a fixed
    range, which a leftover node or another run on the machine may hold."""
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(20000, 22000)
        ports = tuple(range(base, base + count))
        try:
            with contextlib.ExitStack() as held:
                for port in (*ports, *(p + 10000 for p in ports)):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return ports
    raise RuntimeError("no free ports for a test Redis Cluster")


PORTS = _free_ports()
# A master that stops answering is failed over after this long: small, so the failover test is quick.
NODE_TIMEOUT_MS = 1000
# Each test of this directory must finish within this (SIGALRM fails it rather than hanging CI). The failover
# test needs the most: on a loaded machine an election can take a retry (node timeout × 4) or two.
TEST_SECONDS = 45


def _no_cluster_support() -> str:
    """Why this machine's redis-server cannot run a cluster ('' when it can): not installed, or older than
    Redis 3, which brought cluster mode."""
    try:
        found = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "redis-server is not installed"
    version = re.search(r"v=(\d+)\.", found.stdout)
    if found.returncode != 0 or version is None:
        return f"redis-server --version did not answer ({found.stdout.strip()!r})"
    if int(version.group(1)) < 3:
        return f"redis-server {version.group(1)}.x has no cluster mode"
    return ""


@dataclass
class LocalCluster:
    directory: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in PORTS[:3]) + "/"

    def start_node(self, port: int) -> None:
        if self._answers(port):
            raise RuntimeError(f"127.0.0.1:{port} is taken: the test cluster needs ports {PORTS[0]}–{PORTS[-1]}")
        self.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "", "--appendonly", "no",
             # A replica's first sync at once, not after the default 5 s wait for more replicas to join it.
             "--repl-diskless-sync-delay", "0",
             "--daemonize", "no", "--loglevel", "warning", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        process = self.processes[port]
        wait_until(lambda: process.poll() is not None or self._answers(port), 10, interval=0.05,
                   message=f"redis-server :{port} did not start")
        if process.poll() is not None:
            raise RuntimeError(f"redis-server :{port} exited at start ({process.returncode})")

    def kill(self, port: int) -> None:
        """SIGKILL: the node vanishes mid-command, as a crashed host does."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)

    def client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port) for port in PORTS[:3]],
                            socket_timeout=2)

    def flush(self) -> None:
        """Empty every master (a client of its own: a failover may have moved the masters since)."""
        client = self.client()
        try:
            client.flushdb(target_nodes=RedisCluster.PRIMARIES)
        finally:
            client.close()

    def master_of(self, key: str) -> int:
        """The port of the master serving `key` now."""
        client = self.client()
        try:
            return int(client.get_node_from_key(key).port)
        finally:
            client.close()

    def is_ok(self, ports: tuple[int, ...] = PORTS) -> bool:
        for port in ports:
            try:
                info = self.node(port).execute_command("CLUSTER", "INFO")
            except redis.RedisError:
                return False
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True

    def fully_replicated(self) -> bool:
        """Every node up and known to the others, three masters each with a replica that has synced with it.

        A replica whose first sync has not finished refuses to fail over ("disconnected from master for longer
        than allowed"): a master killed before then stays down, and the failover test waits in vain."""
        try:
            nodes = self.node(PORTS[0]).execute_command("CLUSTER", "NODES")
        except redis.RedisError:
            return False
        text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
        lines = [line.split() for line in text.splitlines() if line.strip()]
        healthy = [f for f in lines if "fail" not in f[2] and "fail?" not in f[2] and f[7] == "connected"]
        if not (len(healthy) == len(PORTS) and sum("master" in f[2] for f in healthy) == 3 and self.is_ok()):
            return False
        replicas = [int(f[1].split("@")[0].rsplit(":", 1)[1]) for f in healthy if "slave" in f[2]]
        try:
            return all(self.node(port).info("replication").get("master_link_status") == "up" for port in replicas)
        except redis.RedisError:
            return False

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster owns fixed ports: under pytest-xdist (bin/test runs `--dist loadgroup`) every test of
    this directory goes to one worker, which alone starts it."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("redis_cluster"))


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    if reason := _no_cluster_support():
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="tokonomics-cluster-") as directory:
        cluster = LocalCluster(Path(directory))
        try:
            for port in PORTS:
                cluster.start_node(port)
            info = cluster.node(PORTS[0]).info("cluster")
            if not info.get("cluster_enabled"):
                pytest.skip("redis-server was built without cluster support")
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in PORTS),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )
            wait_until(cluster.fully_replicated, 30, interval=0.1, message="the Redis Cluster did not form")
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(autouse=True)
def bounded_test() -> Iterator[None]:
    """Fails a test that runs past TEST_SECONDS instead of letting it hang."""

    def overrun(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"a Redis Cluster test ran past {TEST_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.alarm(TEST_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def on_cluster(redis_cluster: LocalCluster, settings, clean_redis: None) -> Iterator[LocalCluster]:
    """This test's Redis is the cluster, emptied before and after; Celery keeps the single test Redis."""
    settings.CELERY_BROKER_URL = os.environ["REDIS_URL"]
    settings.REDIS_URL = redis_cluster.url
    sync_redis.cache_clear()
    wait_until(redis_cluster.fully_replicated, 15, interval=0.1, message="the Redis Cluster is not healthy")
    redis_cluster.flush()
    yield redis_cluster
    sync_redis.cache_clear()
    redis_cluster.flush()


def cluster_process_env(redis_cluster: LocalCluster) -> dict[str, str]:
    """What a proxy process of a cluster test needs on top of tests/support.py's process_env."""
    return {"REDIS_URL": redis_cluster.url, "CELERY_BROKER_URL": os.environ["REDIS_URL"]}

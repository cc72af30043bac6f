"""The benchmark's own world: a throw-away database with one benchmark account, a dedicated Redis
database, and the environment every server process of the run gets (production settings)."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import yaml

from .scenarios import BENCH_KEY, UPSTREAM_KEY

# Tests use Redis databases 9 and up (one per xdist worker): the benchmark takes the first free one
# counting down from the last, and holds it with a lock key, so two runs never share one.
REDIS_DBS = (15, 14, 13, 12)
LOCK_KEY = "tokonomics:benchmark:lock"
# High enough never to deny during a run, low enough that every check still runs in the Lua script (and
# within the columns' 2**31 - 1, which applyconfig checks).
RATE_LIMITS = {"requests_per_minute": 100_000_000, "tokens_per_minute": 2_000_000_000, "max_concurrent": 100_000}


def redis_url_for_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def databases_apart_from(url: str, databases: tuple[int, ...] = REDIS_DBS) -> tuple[int, ...]:
    """The databases of `url`'s server a run may take: never `url`'s own, whose keys it would delete."""
    return tuple(db for db in databases if redis_url_for_db(url, db) != url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench_config(simulator_url: str, *, enforcement: bool = True, rate_limits: bool = True) -> dict[str, Any]:
    """The benchmark account: every budget scope, rate limits on the key, a plan request limit —
    or, with enforcement off, none of them (usage recording stays on). `rate_limits` False keeps the
    budgets and the plan limit but not the key's rate limits, which budget leases never cover."""
    config: dict[str, Any] = {
        "accounts": [
            {
                "slug": "bench",
                "name": "Benchmark",
                "plan": "pro",
                "timezone": "UTC",
                "providers": [
                    {"slug": "openai", "kind": "openai", "base_url": f"{simulator_url}/v1", "api_key": UPSTREAM_KEY},
                ],
                "keys": [{"name": "bench", "key": BENCH_KEY, "environment": "production", **RATE_LIMITS}],
                "budgets": [
                    {"scope": "account", "period": "month", "limit_usd": 1_000_000, "hard": True},
                    {"scope": "tenant", "match": "*", "period": "day", "limit_usd": 100_000, "hard": True},
                    {"scope": "feature", "match": "bench", "period": "day", "limit_usd": 100_000, "hard": False},
                    {"scope": "key", "match": "*", "period": "hour", "limit_usd": 100_000, "hard": True},
                ],
            }
        ]
    }
    if enforcement and not rate_limits:
        config["accounts"][0]["keys"] = [{"name": "bench", "key": BENCH_KEY, "environment": "production"}]
    if not enforcement:
        account = config["accounts"][0]
        account.update(plan="enterprise", budgets=[])
        account["keys"] = [{"name": "bench", "key": BENCH_KEY, "environment": "production"}]
    return config


def claim_redis_db(*, server_url: str, databases: tuple[int, ...], hold_seconds: int) -> tuple[str, redis.Redis]:
    """The first of `databases` no other benchmark holds, locked for this run."""
    for db in databases:
        url = redis_url_for_db(server_url, db)
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        if client.set(LOCK_KEY, str(os.getpid()), nx=True, ex=hold_seconds):
            return url, client
        client.close()
    raise RuntimeError(f"other benchmarks hold Redis databases {', '.join(map(str, databases))} of {server_url} "
                       f"(key {LOCK_KEY}); wait for them to finish, or choose a database with --redis-db")


class BenchEnvironment:
    def __init__(self, *, base_dir: Path, redis_server_url: str, redis_dbs: tuple[int, ...], database_url: str | None,
                 keep: bool, hold_seconds: int) -> None:
        self.base_dir = base_dir
        self.keep = keep
        self.redis_url, self.redis = claim_redis_db(server_url=redis_server_url, databases=redis_dbs,
                                                    hold_seconds=hold_seconds)
        self.workdir = Path(tempfile.mkdtemp(prefix="tokonomics-bench-"))
        prometheus_dir = self.workdir / "prometheus"
        prometheus_dir.mkdir()
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url or f"sqlite:///{self.workdir / 'bench.sqlite3'}",
            "REDIS_URL": self.redis_url,
            "DEBUG": "0",
            "TOKONOMICS_SECRET_KEY": secrets.token_urlsafe(50),
            "TOKONOMICS_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING",
            # As bin/run and a multi-worker deployment run it: metrics go through the multiprocess files.
            "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir),
        }
        for name in ("TOKONOMICS_SECRET_KEY_FILE", "TOKONOMICS_ENCRYPTION_KEY_FILE"):
            self.env.pop(name, None)

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=self.base_dir, env=self.env,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def prepare(self, *, simulator_url: str, enforcement: bool = True, rate_limits: bool = True,
                web_app: bool = False) -> None:
        """Migrate the throw-away database and apply the benchmark account to it; for the application serving
        the web app too, collect its static files (it refuses to start without them, as in production)."""
        self.redis.ping()
        self.delete_keys()
        self.manage("migrate", "--no-input", "-v", "0")
        if web_app:
            self.env["STATIC_ROOT"] = str(self.workdir / "static")
            self.manage("collectstatic", "--no-input", "-v", "0")
        config = self.workdir / "bench.yaml"
        config.write_text(yaml.safe_dump(bench_config(simulator_url, enforcement=enforcement, rate_limits=rate_limits)))
        self.manage("applyconfig", str(config))

    def take_usage_events(self) -> int:
        """How many usage events the proxy queued since the last call; they are deleted (nothing drains them)."""
        total = 0
        for stream in self.redis.scan_iter(match="tk:{a:*}:events", count=1000):
            # Counted and deleted in one transaction: the proxy may still be appending.
            pipe = self.redis.pipeline(transaction=True)
            pipe.xlen(stream)
            pipe.delete(stream)
            total += pipe.execute()[0]
        return total

    def delete_keys(self) -> None:
        batch = list(self.redis.scan_iter(match="tk:*", count=1000))
        for start in range(0, len(batch), 1000):
            self.redis.delete(*batch[start:start + 1000])

    def redis_commands(self) -> int:
        """Commands the Redis server ran so far, scripts' own included (INFO commandstats)."""
        stats = self.redis.info("commandstats")
        return sum(int(entry["calls"]) for entry in stats.values() if isinstance(entry, dict))

    def redis_cpu_seconds(self) -> float:
        info = self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def close(self) -> None:
        try:
            self.delete_keys()
            self.redis.delete(LOCK_KEY)
        finally:
            self.redis.close()
            if not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)

"""What tests share that is not a fixture: the live servers (an ASGI app in a thread or a process, a private
redis-server), the accounts and keys they serve, a call through the proxy, the builders of usage events and
directory entries, and `wait_until`, which waits for a condition instead of sleeping for a guess.

Fixtures live in the conftest.py files and import from here; conftest files never import each other."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis
import uvicorn
from django.conf import settings
from django.test import Client

from proxy.directory import CONFIG_VERSION_KEY, AccountEntry, KeyEntry
from proxy.keys import hash_key, visible_prefix
from tokonomics.audit import Actor

REPO = Path(__file__).resolve().parents[1]
KEY = "mk_live_0123456789abcdefghijklmnopqrstuvwx"
OTHER_KEY = "mk_other_0123456789abcdefghijklmnopqrstuvw"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


# --- Redis databases ------------------------------------------------------------------------------

# bin/test gives a run one database of 1 to 11 on the shared server; 0 is bin/run's and 12 to 15 are the
# benchmark's (tools/bench/environment.py REDIS_DBS). Redis has 16 (0 to 15) unless configured otherwise.
TEST_REDIS_DBS = range(1, 12)


def worker_redis_db(run_db: int, worker: int) -> int:
    """The database of parallel worker `worker` (pytest -n) of a run on `run_db`: shifted, wrapping within
    TEST_REDIS_DBS, so it never reaches bin/run's database or the benchmark's, nor past 15."""
    first, count = TEST_REDIS_DBS.start, len(TEST_REDIS_DBS)
    return first + (run_db - first + worker) % count


# --- waiting for a condition ------------------------------------------------------------------

def wait_until(predicate: Callable[[], object], timeout: float = 5, *, interval: float = 0.02,
               message: str = "the condition did not hold in time") -> None:
    """Return as soon as `predicate()` is true; fail the test when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(interval)


def proxy_config_seen(timeout: float = 5) -> None:
    """Wait until the proxy serving in this process (a ServerThread) has seen the configuration version in
    Redis, which drops its cached keys and accounts: its next call loads what the test just saved."""
    from proxy import context
    from tokonomics.redis_client import sync_redis

    def seen() -> bool:
        live = context._context
        # No context yet: nothing is cached, the first call loads the configuration as it is now.
        return live is None or live.directory.version == sync_redis().get(CONFIG_VERSION_KEY)

    wait_until(seen, timeout, message="the proxy did not see the new configuration version")


# --- ports and processes ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(**env: str) -> dict[str, str]:
    """The environment of a process of its own on this test's database and Redis."""
    inherited = {name: value for name, value in os.environ.items()
                 if name not in {"PROMETHEUS_MULTIPROC_DIR", "TOKONOMICS_PROCESS"}}
    database_url = urlsplit(os.environ["DATABASE_URL"])
    return {
        **inherited,
        "DATABASE_URL": urlunsplit(database_url._replace(path="/" + settings.DATABASES["default"]["NAME"])),
        "REDIS_URL": settings.REDIS_URL,
        "TOKONOMICS_REDIS_TIMEOUT": str(settings.TOKONOMICS_REDIS_TIMEOUT),
        "TOKONOMICS_SPOOL_DIR": str(settings.TOKONOMICS_SPOOL_DIR),
        "TOKONOMICS_LEASE_FRACTION": str(settings.TOKONOMICS_LEASE_FRACTION),
        "TOKONOMICS_WARMUP_KEYS": str(settings.TOKONOMICS_WARMUP_KEYS),
        **env,
    }


@functools.cache
def collected_static_root() -> str:
    """A STATIC_ROOT that `collectstatic` filled, once per test process: the web app refuses to start with
    DEBUG off until the static files are collected (tokonomics/static_check.py), as production does."""
    root = tempfile.mkdtemp(prefix="tokonomics-static-")
    atexit.register(shutil.rmtree, root, True)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=REPO, check=True,
                   env={**os.environ, "STATIC_ROOT": root})
    return root


class ServerThread:
    """uvicorn serving an ASGI app on an ephemeral loopback port, in a background thread."""

    def __init__(self, app: str = "tokonomics.asgi:application") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, lifespan="on", log_level="warning", loop="uvloop", http="httptools",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 10, interval=0.01)
        if not self.server.started:
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class ProxyProcess:
    """uvicorn serving an application in a process of its own, as production runs it, on this test's
    database and Redis (the rows a test committed are what it loads)."""

    quiet = False  # True: the server's stdout (runserver's banner) is not shown

    def __init__(self, app: str = "tokonomics.proxy_asgi:application", **env: str) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if app == "tokonomics.asgi:application":  # the web app too, which needs its static files
            env = {"STATIC_ROOT": collected_static_root(), **env}
        self.env = process_env(**env)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(self.port),
                "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(self.command(), cwd=REPO, env=self.env,
                                        stdout=subprocess.DEVNULL if self.quiet else None)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"{' '.join(self.command()[1:4])} did not start")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()  # it must not outlive the test, holding the test database
                self.process.wait()


class RunserverProcess(ProxyProcess):
    """`manage.py runserver`, the development server (Daphne), serving everything on this test's database
    and Redis: the proxy's stream and fault behaviour is tested under it as under uvicorn."""

    quiet = True

    def __init__(self, app: str = "tokonomics.asgi:application", **env: str) -> None:
        super().__init__(app=app, **{"TOKONOMICS_DAPHNE": "1", "SECURE_SSL_REDIRECT": "0", **env})

    def command(self) -> list[str]:
        return [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]


SERVERS = ["uvicorn", "daphne"]


def proxy_served_by(server: str, proxy: str) -> Iterator[str]:
    """The proxy's base URL under `server`: `proxy` (a stack's own, served by uvicorn) or a Daphne runserver
    process on the same database and Redis. For a fixture parametrized over SERVERS (`yield from`)."""
    if server == "uvicorn":
        yield proxy
        return
    with RunserverProcess() as daphne:
        yield daphne.url


class PrivateRedis:
    """A throwaway redis-server for tests that must break Redis (kill it, pause it) or configure it (a
    password, TLS, a unix socket, an eviction policy): never the machine's shared instance. Kill it, start it
    again (empty), or pause it (unreachable, data kept)."""

    def __init__(self, extra_args: Sequence[str] = (), *, password: str | None = None) -> None:
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.password = password
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--loglevel", "warning", *self.extra_args]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, 10, interval=0.05, message="redis-server did not start")

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, db=db, socket_timeout=5)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.kill()

    @classmethod
    @contextmanager
    def running(cls, extra_args: Sequence[str] = (), *, password: str | None = None) -> Iterator[PrivateRedis]:
        server = cls(extra_args, password=password)
        server.start()
        try:
            yield server
        finally:
            server.stop()


# --- accounts, keys and calls -----------------------------------------------------------------

def user_with_seat(email: str, account, role: str):
    from django.contrib.auth import get_user_model

    from billing.models import Seat

    user = get_user_model().objects.create_user(username=email, email=email, password="correct horse battery")
    Seat.objects.create(account=account, user=user, role=role)
    return user


def make_account(slug: str, sim: str, plan):
    from billing.models import Account
    from proxy.models import ProviderEndpoint

    account = Account.objects.create(slug=slug, name=slug.title(), plan=plan, timezone="UTC")
    for endpoint_slug, wire, base in (
        ("openai", "openai", f"{sim}/v1"),
        ("anthropic", "anthropic", sim),
        ("vllm-internal", "openai", f"{sim}/v1"),
    ):
        endpoint = ProviderEndpoint(account=account, slug=endpoint_slug, wire_format=wire, base_url=base,
                                    pricing_provider={"vllm-internal": ""}.get(endpoint_slug, endpoint_slug))
        endpoint.set_credential(f"sk-upstream-{endpoint_slug}-{slug}")
        endpoint.save()
    return account


def make_key(account, plaintext: str, **fields):
    from proxy.models import ApiKey

    return ApiKey.objects.create(
        account=account, name=fields.pop("name", "main"), key_hash=hash_key(plaintext),
        prefix=visible_prefix(plaintext), **fields,
    )


@dataclass
class Stack:
    proxy: str
    sim: str
    account: object
    key: object

    def sim_requests(self) -> list[dict]:
        return httpx.get(f"{self.sim}/_sim/requests").json()

    def clear_sim(self) -> None:
        httpx.delete(f"{self.sim}/_sim/requests")


def chat(stack: Stack, body: dict | None = None, **headers: str) -> httpx.Response:
    """One chat completion through the live proxy with KEY (`body` defaults to CHAT)."""
    return httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=body or CHAT,
                      headers={"Authorization": f"Bearer {KEY}", **headers}, timeout=10)


# --- the REST API ---------------------------------------------------------------------------

@dataclass
class ApiClient:
    """Django's test client speaking JSON to /api/v1/ with one management token."""

    token: str | None

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        client = Client()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        url = path if path.startswith("/") else f"/api/v1/{path}"
        if method == "GET":
            return client.get(url, query, headers=headers)
        data = "" if body is None else json.dumps(body)
        return client.generic(method, url, data, content_type="application/json", headers=headers)

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def token_for(account, *, read_only: bool = False, name: str = "tests") -> str:
    from billing.accounts.management_tokens import management_token_create

    return management_token_create(account=account, actor=Actor.of_system("tests"), name=name,
                                   read_only=read_only)[1]


# --- what the proxy emits and caches ------------------------------------------------------------

def ingested_record(request_id: str, timeout: float = 5) -> Any:
    """The call's usage record, once the ledger has stored it (the proxy queues it as the answer ends)."""
    from billing.models import UsageRecord
    from billing.usage.ledger import usage_ingest

    deadline = time.monotonic() + timeout
    while (saved := UsageRecord.objects.filter(request_id=request_id).first()) is None:
        assert time.monotonic() < deadline, "no usage record"
        usage_ingest(max_seconds=0.2)
    return saved


def usage_record_build(**fields: Any) -> Any:
    """An unsaved usage record: its label fields (feature, tenant, model, tags…) name its label set, made if
    new; the others are the record's own."""
    from billing.models import LABEL_FIELDS, UsageRecord
    from billing.usage.labels import label_columns, label_set_ids, labels_of

    account_id = fields["account"].pk if "account" in fields else fields["account_id"]
    labels = labels_of(fields)
    labels_id = label_set_ids([(account_id, labels)])[(account_id, labels)]
    record = UsageRecord(labels_id=labels_id, **{k: v for k, v in fields.items() if k not in LABEL_FIELDS})
    for name, value in label_columns(labels).items():
        setattr(record, name, value)
    return record


def usage_record_create(**fields: Any) -> Any:
    """A stored usage record (usage_record_build, saved), read back as callers see records."""
    from billing.models import UsageRecord

    record = usage_record_build(**fields)
    record.save()
    return UsageRecord.objects.get(pk=record.pk)


def usage_event(account_id: int, n: int, *, prefix: str = "req_test", **fields: Any) -> dict[str, Any]:
    """The usage event of the proxy's n-th call (as queued for the ledger), `fields` overriding."""
    return {
        "request_id": f"{prefix}_{n}", "account_id": account_id, "key_id": None, "provider": "openai",
        "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5, "cost_usd": "0.000004500",
        "status_code": 200, "created_at": 1_760_000_000.0 + n, **fields,
    }


def account_entry(account_id: int, *, timezone: str = "UTC", **fields: Any) -> AccountEntry:
    """A directory entry of an account with no endpoints, budgets, prices or plan cap unless `fields` give them."""
    defaults: dict[str, Any] = {"monthly_request_limit": 0, "on_redis_unavailable": "default",
                                "allow_unmetered_routes": False, "endpoints": {}, "budgets": (), "prices": {}}
    return AccountEntry(id=account_id, timezone=timezone, **{**defaults, **fields})


def key_entry(key_id: int, *, account_id: int, name: str = "main", **fields: Any) -> KeyEntry:
    """A directory entry of a live key with no model patterns, expiry or rate limits unless `fields` give them."""
    defaults: dict[str, Any] = {"environment": "", "allowed_patterns": (), "expires_at": None, "revoked": False,
                                "requests_per_minute": 0, "tokens_per_minute": 0, "max_concurrent": 0}
    return KeyEntry(id=key_id, account_id=account_id, name=name, **{**defaults, **fields})

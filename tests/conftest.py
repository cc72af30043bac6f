"""Shared fixtures. Personas: alice (owner of acme), bob (member of acme), charlie (owner of
globex, an outsider to acme). Real PostgreSQL and real Redis."""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import uvicorn
from django.conf import settings

from proxy.keys import hash_key, visible_prefix


def pytest_configure(config: pytest.Config) -> None:
    # Tests run with DEBUG off (production-like) but without a collectstatic manifest or TLS.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    settings.SECURE_SSL_REDIRECT = False
    # Parallel workers (pytest -n) each get a Redis database of their own.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        base, _, db = settings.REDIS_URL.rpartition("/")
        settings.REDIS_URL = f"{base}/{int(db or 0) + int(worker[2:])}"
        settings.CELERY_BROKER_URL = settings.REDIS_URL


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    from tokonomics.redis_client import sync_redis

    sync_redis.cache_clear()
    client = sync_redis()
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture(autouse=True)
def spool_dir(tmp_path, settings):  # type: ignore[no-untyped-def]
    """Usage spools of this test's proxies (in process or not): never another test's, never var/."""
    settings.TOKONOMICS_SPOOL_DIR = str(tmp_path / "spool")
    return tmp_path / "spool"


@pytest.fixture
def plans(db):  # type: ignore[no-untyped-def]
    from billing.models import Plan

    # A transactional test flushes every table, the migration's seeded plans included: seed them again.
    seeded = importlib.import_module("billing.migrations.0003_seed_plans").PLANS
    for fields in seeded:
        Plan.objects.get_or_create(slug=fields["slug"], defaults=fields)
    return {p.slug: p for p in Plan.objects.all()}


@pytest.fixture
def acme(plans):  # type: ignore[no-untyped-def]
    from billing.models import Account

    return Account.objects.create(slug="acme", name="Acme Inc", plan=plans["pro"], timezone="UTC")


@pytest.fixture
def globex(plans):  # type: ignore[no-untyped-def]
    from billing.models import Account

    return Account.objects.create(slug="globex", name="Globex", plan=plans["starter"], timezone="Europe/Paris")


def _user_with_seat(email: str, account, role: str):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    from billing.models import Seat

    user = get_user_model().objects.create_user(username=email, email=email, password="correct horse battery")
    Seat.objects.create(account=account, user=user, role=role)
    return user


@pytest.fixture
def alice(acme):  # type: ignore[no-untyped-def]
    return _user_with_seat("alice@acme.test", acme, "owner")


@pytest.fixture
def bob(acme):  # type: ignore[no-untyped-def]
    return _user_with_seat("bob@acme.test", acme, "member")


@pytest.fixture
def charlie(globex):  # type: ignore[no-untyped-def]
    return _user_with_seat("charlie@globex.test", globex, "owner")


@pytest.fixture
def superuser(db):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root@ops.test", "root@ops.test", "operator password 1")


# --- a live proxy (the production ASGI app under uvicorn, in a thread) in front of the simulator ---
KEY = "mk_live_0123456789abcdefghijklmnopqrstuvwx"
OTHER_KEY = "mk_other_0123456789abcdefghijklmnopqrstuvw"


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
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the proxy did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def simulator() -> Iterator[str]:
    from proxy.simulator import SimulatorThread

    with SimulatorThread(port=0) as sim:
        yield sim.base_url


def make_account(slug: str, sim: str, plan):  # type: ignore[no-untyped-def]
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


def make_key(account, plaintext: str, **fields):  # type: ignore[no-untyped-def]
    from proxy.models import ApiKey

    return ApiKey.objects.create(
        account=account, name=fields.pop("name", "main"), key_hash=hash_key(plaintext),
        prefix=visible_prefix(plaintext), **fields,
    )


@pytest.fixture
def stack(transactional_db, simulator, plans) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    account = make_account("acme", simulator, plans["pro"])
    key = make_key(account, KEY)
    with ServerThread() as server:
        yield Stack(proxy=server.url, sim=simulator, account=account, key=key)


@pytest.fixture
def silent_smtp(settings) -> Iterator[float]:  # type: ignore[no-untyped-def]
    """Real SMTP, to a server that accepts connections (the backlog) and never says hello. Yields the
    EMAIL_TIMEOUT set: mail code that ignores the one setting hangs well past it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", silent.getsockname()[1]
        settings.EMAIL_TIMEOUT = 0.5
        yield settings.EMAIL_TIMEOUT

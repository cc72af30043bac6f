"""Shared fixtures. Personas: alice (owner of acme), bob (member of acme), charlie (owner of
globex, an outsider to acme). Real PostgreSQL and real Redis. Helpers that are not fixtures live in
tests/support.py."""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Iterator

import pytest
from django.conf import settings

from .support import KEY, PrivateRedis, ServerThread, Stack, make_account, make_key, user_with_seat, worker_redis_db


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
        settings.REDIS_URL = f"{base}/{worker_redis_db(int(db or 0), int(worker[2:]))}"
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
def budget_leases_off(settings) -> None:
    """Budget leases (proxy/leases.py) settle calls in batches, 100 ms after they end: tests that read the
    counters or usage events right after a call see them settle as without leases. Tests of leases, and the
    race tests, turn them on with `leases_on` (before `stack`, whose proxy reads the setting at start-up)."""
    settings.TOKONOMICS_LEASE_FRACTION = 0.0


@pytest.fixture
def leases_on(settings) -> None:
    settings.TOKONOMICS_LEASE_FRACTION = 0.25  # the production default


@pytest.fixture(autouse=True)
def no_directory_preload(settings) -> None:
    """A proxy a test starts does not preload keys and accounts (proxy/warmup.py): tests change them right
    after the server starts, without waiting for the configuration poll that would drop a preloaded entry.
    The rest of the warm-up runs; tests/proxy/test_cold_start.py turns the preload back on."""
    settings.TOKONOMICS_WARMUP_KEYS = 0


@pytest.fixture(autouse=True)
def spool_dir(tmp_path, settings):
    """Usage spools of this test's proxies (in process or not): never another test's, never var/."""
    settings.TOKONOMICS_SPOOL_DIR = str(tmp_path / "spool")
    return tmp_path / "spool"


@pytest.fixture
def plans(db):
    from billing.models import Plan

    # A transactional test flushes every table, the migration's seeded plans included: seed them again.
    seeded = importlib.import_module("billing.migrations.0003_seed_plans").PLANS
    for fields in seeded:
        Plan.objects.get_or_create(slug=fields["slug"], defaults=fields)
    return {p.slug: p for p in Plan.objects.all()}


@pytest.fixture
def acme(plans):
    from billing.models import Account

    return Account.objects.create(slug="acme", name="Acme Inc", plan=plans["pro"], timezone="UTC")


@pytest.fixture
def globex(plans):
    from billing.models import Account

    return Account.objects.create(slug="globex", name="Globex", plan=plans["starter"], timezone="Europe/Paris")


@pytest.fixture
def alice(acme):
    return user_with_seat("alice@acme.test", acme, "owner")


@pytest.fixture
def bob(acme):
    return user_with_seat("bob@acme.test", acme, "member")


@pytest.fixture
def charlie(globex):
    return user_with_seat("charlie@globex.test", globex, "owner")


@pytest.fixture
def superuser(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root@ops.test", "root@ops.test", "operator password 1")


# --- a live proxy (the production ASGI app under uvicorn, in a thread) in front of the simulator ---

@pytest.fixture
def simulator() -> Iterator[str]:
    from proxy.simulator import SimulatorThread

    with SimulatorThread(port=0) as sim:
        yield sim.base_url


@pytest.fixture
def stack(transactional_db, simulator, plans) -> Iterator[Stack]:
    account = make_account("acme", simulator, plans["pro"])
    key = make_key(account, KEY)
    with ServerThread() as server:
        yield Stack(proxy=server.url, sim=simulator, account=account, key=key)


@pytest.fixture
def silent_smtp(settings) -> Iterator[float]:
    """Real SMTP, to a server that accepts connections (the backlog) and never says hello. Yields the
    EMAIL_TIMEOUT set: mail code that ignores the one setting hangs well past it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", silent.getsockname()[1]
        settings.EMAIL_TIMEOUT = 0.5
        yield settings.EMAIL_TIMEOUT


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of the test's own (tests/support.py), for tests that break, configure or block Redis:
    the shared server also serves the other test worker's proxies, whose Redis timeout is 0.25 s, so even
    a slow script there makes their calls fail (SLOWLOG shows what ran long)."""
    with PrivateRedis.running() as server:
        yield server

"""Shared fixtures. Personas: alice (owner of acme), bob (member of acme), charlie (owner of
globex, an outsider to acme). Real PostgreSQL and real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings


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


@pytest.fixture
def plans(db):  # type: ignore[no-untyped-def]
    from billing.models import Plan

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

"""Web-app personas beyond alice (owner) and bob (member) of acme: carol (admin) and dave (viewer)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from ..conftest import _user_with_seat


@pytest.fixture
def carol(acme):  # type: ignore[no-untyped-def]
    return _user_with_seat("carol@acme.test", acme, "admin")


@pytest.fixture
def dave(acme):  # type: ignore[no-untyped-def]
    return _user_with_seat("dave@acme.test", acme, "viewer")


@pytest.fixture
def client_as() -> Callable[..., Client]:
    def make(user, **headers) -> Client:  # type: ignore[no-untyped-def]
        client = Client(**headers)
        client.force_login(user)
        return client

    return make


@pytest.fixture
def htmx() -> dict[str, str]:
    """Extra headers of a request made by HTMX."""
    return {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def enterprise(acme, plans):  # type: ignore[no-untyped-def]
    acme.plan = plans["enterprise"]
    acme.save(update_fields=["plan"])
    return acme

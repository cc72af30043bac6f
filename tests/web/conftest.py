"""Web-app personas beyond alice (owner) and bob (member) of acme: carol (admin) and dave (viewer)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.test import Client

from billing.models import SsoConfig, SsoDomain

from ..support import user_with_seat
from .oidc_provider import OidcProvider


@pytest.fixture
def carol(acme):
    return user_with_seat("carol@acme.test", acme, "admin")


@pytest.fixture
def dave(acme):
    return user_with_seat("dave@acme.test", acme, "viewer")


@pytest.fixture
def client_as() -> Callable[..., Client]:
    def make(user, **headers) -> Client:
        client = Client(**headers)
        client.force_login(user)
        return client

    return make


@pytest.fixture
def htmx() -> dict[str, str]:
    """Extra headers of a request made by HTMX."""
    return {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def enterprise(acme, plans):
    acme.plan = plans["enterprise"]
    acme.save(update_fields=["plan"])
    return acme


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    """A local OpenID Connect provider (tests/web/oidc_provider.py)."""
    with OidcProvider().running() as running:
        yield running


@pytest.fixture
def sso_config(enterprise, provider: OidcProvider) -> SsoConfig:
    """acme's SSO through `provider`, for its verified domain acme.test."""
    config = SsoConfig(account=enterprise, issuer=provider.issuer, client_id=provider.client_id, default_role="member")
    config.set_client_secret(provider.client_secret)
    config.save()
    SsoDomain.objects.create(config=config, domain="acme.test", status="verified", verified_by="root@ops.test")
    return config

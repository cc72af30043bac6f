"""OpenID Connect fetches (discovery, token, key set) with private URLs off: checked when connecting."""

from __future__ import annotations

import pytest

from billing.sso.services import ProviderMetadata, SsoError, _get_json, issuer_problem, provider_metadata_get

from ..rebinding_dns import REBINDING_HOST, Listener, RebindingResolver, listener, rebinding_dns

__all__ = ["listener", "rebinding_dns"]


@pytest.fixture
def private_urls_off(settings):
    settings.TOKONOMICS_ALLOW_PRIVATE_URLS = False


def test_discovery_on_a_rebinding_name_never_connects(private_urls_off, rebinding_dns: RebindingResolver,
                                                      listener: Listener) -> None:
    issuer = f"https://{REBINDING_HOST}:{listener.port}"
    assert issuer_problem(issuer) is None  # first answer: public

    with pytest.raises(SsoError, match="private"):
        provider_metadata_get(issuer=issuer)

    assert rebinding_dns.answers[REBINDING_HOST] == ["93.184.215.14", "127.0.0.1"]
    assert listener.connections == 0


def test_key_set_and_token_endpoints_on_private_addresses_are_refused(private_urls_off, listener: Listener) -> None:
    with pytest.raises(SsoError, match="private"):
        _get_json(f"http://127.0.0.1:{listener.port}/jwks", "key set")
    metadata = ProviderMetadata(issuer="https://idp.example", authorization_endpoint="https://idp.example/a",
                                token_endpoint=f"http://[::ffff:127.0.0.1]:{listener.port}/token",
                                jwks_uri="https://idp.example/jwks", token_endpoint_auth_methods=("none",))
    from billing.models import SsoConfig
    from billing.sso.services import code_exchange

    config = SsoConfig(client_id="web")
    with pytest.raises(SsoError, match="private"):
        code_exchange(config=config, metadata=metadata, code="c", code_verifier="v")
    assert listener.connections == 0


def test_loopback_http_issuers_follow_the_policy(settings) -> None:
    assert issuer_problem("http://127.0.0.1:8080") is None
    settings.TOKONOMICS_ALLOW_PRIVATE_URLS = False
    assert "private" in (issuer_problem("http://127.0.0.1:8080") or "")
    assert "private" in (issuer_problem("http://localhost:8080") or "")

"""OpenID Connect sign-in, end to end against the real provider of tests/web/oidc_provider.py: discovery,
JWKS, the authorization and token endpoints over HTTP on 127.0.0.1. The browser is Django's test
client plus httpx, following the redirects by hand."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.test import Client

from billing.models import AuditEntry, Seat

from .oidc_provider import OidcProvider

pytestmark = pytest.mark.django_db


def _start(client: Client, email: str, next_url: str = "") -> str:
    """The login page's SSO link: ask for the email, get sent to the issuer's authorization endpoint."""
    response = client.post("/sso/start/", {"email": email, "next": next_url})
    assert response.status_code == 302, response.content.decode()
    return response["Location"]


def _sign_in(client: Client, provider: OidcProvider, email: str, next_url: str = ""):
    authorize = httpx.get(_start(client, email, next_url), follow_redirects=False)
    assert authorize.status_code == 302, authorize.text
    callback = urlsplit(authorize.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == f"{settings.SITE_URL}/sso/callback/"
    return client.get(f"{callback.path}?{callback.query}")


def _signed_in_as(client: Client) -> str | None:
    user_id = client.session.get(SESSION_KEY)
    return get_user_model().objects.get(pk=user_id).email if user_id else None


def test_a_new_person_signs_in_and_gets_a_seat_just_in_time(sso_config, provider):
    provider.person = {"sub": "idp-42", "email": "Erin@Acme.test", "email_verified": True}
    client = Client()
    response = _sign_in(client, provider, "erin@acme.test")
    assert response.status_code == 302 and response["Location"] == settings.LOGIN_REDIRECT_URL
    assert _signed_in_as(client) == "erin@acme.test"
    erin = get_user_model().objects.get(email="erin@acme.test")
    assert not erin.has_usable_password()
    assert Seat.objects.get(account=sso_config.account, user=erin).role == "member"
    entry = AuditEntry.objects.get(action="seat.created_by_sso")
    assert entry.after == {"email": "erin@acme.test", "role": "member", "issuer": provider.issuer}
    assert client.get("/a/acme/team/").status_code == 200
    # The second time, the same user and seat.
    client.logout()
    _sign_in(client, provider, "erin@acme.test")
    assert _signed_in_as(client) == "erin@acme.test" and Seat.objects.filter(user=erin).count() == 1


def test_the_request_carries_state_nonce_and_pkce_and_the_exchange_proves_it(sso_config, provider):
    provider.person = {"sub": "idp-1", "email": "bob@acme.test"}
    client = Client()
    query = parse_qs(urlsplit(_start(client, "bob@acme.test")).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"][0] and query["nonce"][0] and query["scope"] == ["openid email"]
    assert query["redirect_uri"] == [f"{settings.SITE_URL}/sso/callback/"]


def test_existing_seated_user_signs_in_and_goes_to_next(sso_config, provider, bob):
    provider.person = {"sub": "idp-7", "email": "bob@acme.test", "email_verified": True}
    client = Client()
    response = _sign_in(client, provider, "bob@acme.test", next_url="/a/acme/team/")
    assert response["Location"] == "/a/acme/team/"
    assert _signed_in_as(client) == "bob@acme.test"
    assert Seat.objects.get(user=bob).role == "member"  # unchanged by the default role
    assert provider.token_requests[0]["code_verifier"]  # PKCE went to the token endpoint


def test_next_pointing_elsewhere_is_ignored(sso_config, provider, bob):
    provider.person = {"sub": "idp-7", "email": "bob@acme.test"}
    response = _sign_in(Client(), provider, "bob@acme.test", next_url="https://evil.test/")
    assert response["Location"] == settings.LOGIN_REDIRECT_URL


@pytest.mark.parametrize(("override", "problem"), [
    ({"aud": "another-client"}, "issued for another application (audience)"),
    ({"aud": ["tokonomics-web", "another-client"], "azp": "another-client"}, "authorized party"),
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "has expired"),
    ({"iss": "https://impostor.test"}, "issued by another identity provider"),
    ({"nonce": "replayed-nonce"}, "does not belong to this sign-in (nonce)"),
])
def test_an_id_token_with_bad_claims_is_refused(sso_config, provider, bob, override, problem):
    provider.person = {"sub": "idp-7", "email": "bob@acme.test"}
    provider.claims_override = override
    client = Client()
    response = _sign_in(client, provider, "bob@acme.test")
    assert response.status_code == 403 and problem in response.content.decode()
    assert _signed_in_as(client) is None


def test_a_tampered_id_token_is_refused(sso_config, provider, alice):
    provider.person = {"sub": "idp-7", "email": "bob@acme.test"}
    provider.tamper = True  # the payload now says ceo@acme.test; the signature is bob's
    client = Client()
    response = _sign_in(client, provider, "bob@acme.test")
    assert response.status_code == 403 and "signature does not verify" in response.content.decode()
    assert _signed_in_as(client) is None


def test_an_id_token_signed_by_a_key_outside_the_jwks_is_refused(sso_config, provider, bob):
    provider.person = {"sub": "idp-7", "email": "bob@acme.test"}
    provider.forge_with = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = Client()
    response = _sign_in(client, provider, "bob@acme.test")
    assert response.status_code == 403 and "signature does not verify" in response.content.decode()
    assert _signed_in_as(client) is None


def test_an_email_outside_the_allowed_domains_is_refused(sso_config, provider):
    provider.person = {"sub": "idp-9", "email": "mallory@elsewhere.test", "email_verified": True}
    client = Client()
    response = _sign_in(client, provider, "someone@acme.test")
    assert response.status_code == 403
    assert "mallory@elsewhere.test is not in a verified domain that signs in to Acme Inc" in response.content.decode()
    assert _signed_in_as(client) is None
    assert not get_user_model().objects.filter(email="mallory@elsewhere.test").exists()


def test_an_unverified_email_is_refused(sso_config, provider):
    provider.person = {"sub": "idp-9", "email": "erin@acme.test", "email_verified": False}
    response = _sign_in(Client(), provider, "erin@acme.test")
    assert response.status_code == 403 and "has not verified" in response.content.decode()


def test_an_existing_user_without_a_seat_is_not_signed_in(sso_config, provider, charlie):
    # An identity provider can only sign people into the account it serves: charlie's user (in globex)
    # must not be reachable through acme's provider, even if it asserts his address.
    sso_config.domains.create(domain="globex.test", status="verified")
    provider.person = {"sub": "idp-3", "email": "charlie@globex.test"}
    client = Client()
    response = _sign_in(client, provider, "charlie@globex.test")
    assert response.status_code == 403 and "no seat in Acme Inc" in response.content.decode()
    assert _signed_in_as(client) is None and not Seat.objects.filter(user=charlie, account__slug="acme").exists()


def test_a_callback_with_another_state_or_twice_is_refused(sso_config, provider, bob):
    provider.person = {"sub": "idp-7", "email": "bob@acme.test"}
    client = Client()
    authorize = httpx.get(_start(client, "bob@acme.test"), follow_redirects=False)
    callback = urlsplit(authorize.headers["location"])
    forged = client.get(f"{callback.path}?code={parse_qs(callback.query)['code'][0]}&state=forged")
    assert forged.status_code == 400 and "(state)" in forged.content.decode()
    replay = client.get(f"{callback.path}?{callback.query}")  # the pending sign-in was used up
    assert replay.status_code == 400 and _signed_in_as(client) is None


def test_the_providers_error_is_shown(sso_config, provider):
    client = Client()
    state = parse_qs(urlsplit(_start(client, "bob@acme.test")).query)["state"][0]
    response = client.get(f"/sso/callback/?error=access_denied&error_description=User+cancelled&state={state}")
    assert response.status_code == 403 and "User cancelled" in response.content.decode()


def test_sso_start_explains_a_domain_without_sso(sso_config):
    response = Client().post("/sso/start/", {"email": "someone@nowhere.test"})
    assert response.status_code == 400
    assert "No single sign-on is set up for nowhere.test" in response.content.decode()


def test_sso_is_unavailable_once_the_plan_loses_it(sso_config, plans):
    sso_config.account.plan = plans["pro"]
    sso_config.account.save()
    response = Client().post("/sso/start/", {"email": "bob@acme.test"})
    assert response.status_code == 400 and "No single sign-on" in response.content.decode()


def test_an_unreachable_issuer_is_explained(sso_config):
    sso_config.issuer = "http://127.0.0.1:9/"
    sso_config.save()
    response = Client().post("/sso/start/", {"email": "bob@acme.test"})
    assert response.status_code == 400 and "Could not read the identity provider" in response.content.decode()


# --- password sign-in ---


def test_login_page_offers_sso_when_an_account_has_it(sso_config):
    page = Client().get("/login/?next=/a/acme/").content.decode()
    assert 'href="/sso/start/?next=/a/acme/"' in page


def test_password_sign_in_is_refused_when_the_account_disabled_it(sso_config, alice, provider):
    sso_config.password_login_disabled = True
    sso_config.save()
    client = Client()
    response = client.post("/login/", {"username": "alice@acme.test", "password": "correct horse battery"})
    assert response.status_code == 200
    assert "Acme Inc requires single sign-on" in response.content.decode()
    assert _signed_in_as(client) is None
    # SSO itself still works for her.
    provider.person = {"sub": "idp-alice", "email": "alice@acme.test"}
    _sign_in(client, provider, "alice@acme.test")
    assert _signed_in_as(client) == "alice@acme.test"


def test_password_sign_in_still_works_where_sso_cannot_serve(sso_config, acme, alice):
    from ..support import user_with_seat

    sso_config.password_login_disabled = True
    sso_config.save()
    user_with_seat("contractor@freelance.test", acme, "member")  # not in acme's SSO domains
    client = Client()
    response = client.post("/login/", {"username": "contractor@freelance.test", "password": "correct horse battery"})
    assert response.status_code == 302 and _signed_in_as(client) == "contractor@freelance.test"


def test_password_sign_in_works_while_sso_allows_it(sso_config, alice):
    client = Client()
    response = client.post("/login/", {"username": "alice@acme.test", "password": "correct horse battery"})
    assert response.status_code == 302 and _signed_in_as(client) == "alice@acme.test"

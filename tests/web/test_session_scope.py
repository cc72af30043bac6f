"""What a session may open: one opened through account X's identity provider opens X alone, and never
the operator's admin; a password sign-in opens every account of the person but those requiring SSO
of them, which their own IdP then opens in the same session."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import Seat

from .test_sso import _sign_in, _signed_in_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_also_in_globex(bob, globex):
    Seat.objects.create(account=globex, user=bob, role="owner")
    return bob


def _sso_client(provider, email: str) -> Client:
    provider.person = {"sub": f"idp-{email}", "email": email, "email_verified": True}
    client = Client()
    _sign_in(client, provider, email)
    assert _signed_in_as(client) == email
    return client


def test_an_idp_session_opens_its_own_account_only(sso_config, provider, bob_also_in_globex):
    client = _sso_client(provider, "bob@acme.test")
    assert client.get("/a/acme/").status_code == 200
    for path in ("/a/globex/", "/a/globex/keys/", "/a/globex/team/", "/a/globex/budgets/"):
        response = client.get(path)
        assert response.status_code == 403, path
        page = response.content.decode()
        assert "Sign in with your password to open Globex" in page and 'href="/login/?next=' in page
    assert client.post("/a/globex/keys/new", {"name": "x"}).status_code == 403


def test_the_account_list_shows_what_the_session_may_open(sso_config, provider, bob_also_in_globex):
    client = _sso_client(provider, "bob@acme.test")
    page = client.get("/").content.decode()
    assert 'href="/a/acme/"' in page and 'href="/a/globex/"' not in page
    assert "Globex" in page and "/login/?next=/a/globex/" in page


def test_a_password_sign_in_opens_every_account_again(sso_config, provider, bob_also_in_globex):
    client = _sso_client(provider, "bob@acme.test")
    response = client.post("/login/", {"username": "bob@acme.test", "password": "correct horse battery"})
    assert response.status_code == 302
    assert client.get("/a/globex/").status_code == 200 and client.get("/a/acme/").status_code == 200


def test_sso_on_top_of_a_password_session_keeps_it_whole(sso_config, provider, bob_also_in_globex):
    client = Client()
    client.post("/login/", {"username": "bob@acme.test", "password": "correct horse battery"})
    provider.person = {"sub": "idp-bob", "email": "bob@acme.test", "email_verified": True}
    _sign_in(client, provider, "bob@acme.test")
    assert client.get("/a/globex/").status_code == 200


def test_the_rest_api_is_not_opened_by_a_session(sso_config, provider, bob_also_in_globex):
    client = _sso_client(provider, "bob@acme.test")
    assert client.get("/api/v1/keys").status_code == 401


def test_a_superuser_signed_in_through_sso_never_reaches_the_admin(sso_config, provider, acme):
    root = get_user_model().objects.create_superuser("root@acme.test", "root@acme.test", "operator password 1")
    Seat.objects.create(account=acme, user=root, role="owner")
    client = _sso_client(provider, "root@acme.test")
    assert client.get("/a/acme/").status_code == 200
    for path in ("/admin/", "/admin/billing/account/", "/admin/auth/user/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path
    root.refresh_from_db()
    assert root.is_superuser and root.is_staff  # refused in this session, not demoted
    # The operator's password still opens the admin.
    client.post("/admin/login/", {"username": "root@acme.test", "password": "operator password 1"})
    assert client.get("/admin/billing/account/").status_code == 200


def test_a_password_session_of_a_superuser_reaches_the_admin(superuser):
    client = Client()
    client.post("/login/", {"username": "root@ops.test", "password": "operator password 1"})
    assert client.get("/admin/").status_code == 200


def test_sync_and_async_views_alike_see_no_staff_rights_in_an_sso_session(superuser):
    from asgiref.sync import async_to_sync
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.middleware import AuthenticationMiddleware
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.http import HttpResponse
    from django.test import RequestFactory

    from billing.sso.session_scope import SSO_ACCOUNTS_SESSION_KEY, SessionScopeMiddleware

    request = RequestFactory().get("/")
    SessionMiddleware(lambda r: HttpResponse()).process_request(request)
    request.session.update({SESSION_KEY: str(superuser.pk), HASH_SESSION_KEY: superuser.get_session_auth_hash(),
                            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                            SSO_ACCOUNTS_SESSION_KEY: [1]})
    AuthenticationMiddleware(lambda r: HttpResponse()).process_request(request)
    seen = {}

    def view(request):
        asynchronous = async_to_sync(request.auser)()
        seen.update(sync=(request.user.is_staff, request.user.is_superuser, request.user.has_perm("billing.add_plan")),
                    asynchronous=(asynchronous.is_staff, asynchronous.is_superuser), who=asynchronous.pk)
        return HttpResponse()

    SessionScopeMiddleware(view)(request)
    assert seen == {"sync": (False, False, False), "asynchronous": (False, False), "who": superuser.pk}


# --- accounts that require single sign-on ---

PASSWORD = {"username": "bob@acme.test", "password": "correct horse battery"}


@pytest.fixture
def acme_requires_sso(sso_config):
    sso_config.password_login_disabled = True
    sso_config.save()
    return sso_config


def test_a_password_opens_the_other_accounts_and_sso_then_opens_the_one_requiring_it(
        acme_requires_sso, provider, bob_also_in_globex):
    client = Client()
    assert client.post("/login/", PASSWORD).status_code == 302
    assert client.get("/a/globex/").status_code == 200
    asked = client.get("/a/acme/")
    assert asked.status_code == 403
    page = asked.content.decode()
    assert "Acme Inc requires single sign-on" in page and 'href="/sso/start/?next=/a/acme/"' in page
    assert "Sign in with your password" not in page  # that would only open the same session again
    home = client.get("/").content.decode()
    assert 'href="/a/globex/"' in home and 'href="/a/acme/"' not in home and "/sso/start/?next=/a/acme/" in home
    # Through acme's identity provider, the same session opens acme too, and keeps globex.
    provider.person = {"sub": "idp-bob", "email": "bob@acme.test", "email_verified": True}
    _sign_in(client, provider, "bob@acme.test")
    assert client.get("/a/acme/").status_code == 200 and client.get("/a/globex/").status_code == 200
    # A new password sign-in closes acme again.
    assert client.post("/login/", PASSWORD).status_code == 302
    assert client.get("/a/acme/").status_code == 403 and client.get("/a/globex/").status_code == 200


def test_an_idp_session_then_a_password_keeps_the_sso_requirement(acme_requires_sso, provider, bob_also_in_globex):
    client = _sso_client(provider, "bob@acme.test")
    assert client.post("/login/", PASSWORD).status_code == 302
    assert client.get("/a/globex/").status_code == 200 and client.get("/a/acme/").status_code == 403


def test_the_operators_password_reaches_the_admin_but_not_an_account_requiring_sso(acme_requires_sso, acme):
    root = get_user_model().objects.create_superuser("root@acme.test", "root@acme.test", "operator password 1")
    Seat.objects.create(account=acme, user=root, role="owner")
    client = Client()
    client.post("/admin/login/", {"username": "root@acme.test", "password": "operator password 1"})
    assert client.get("/admin/billing/account/").status_code == 200
    assert client.get("/a/acme/").status_code == 403

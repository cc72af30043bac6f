"""Password sign-in is throttled per account (the address tried) and per client address (django-axes):
past the limit even the right password gets 429 with an explanation, until the cool-off ends; a
successful sign-in resets the count. X-Forwarded-For counts only behind a configured proxy."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

RIGHT, WRONG = "correct horse battery", "not the password"


@pytest.fixture(autouse=True)
def limit_of_three(settings):
    settings.AXES_FAILURE_LIMIT = 3


def _sign_in(username: str, password: str, ip: str = "198.51.100.7", **headers: str):
    return Client(REMOTE_ADDR=ip, **headers).post("/login/", {"username": username, "password": password})


def test_an_account_is_locked_after_the_limit_from_any_address(alice):
    for attempt in range(2):
        assert _sign_in("alice@acme.test", WRONG, ip=f"203.0.113.{attempt}").status_code == 200
    assert _sign_in("alice@acme.test", WRONG, ip="203.0.113.2").status_code == 429  # the limit reached
    locked = _sign_in("Alice@Acme.test", RIGHT, ip="192.0.2.99")  # another address, other case
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode() and locked["Retry-After"] == "900"
    assert _sign_in("bob@acme.test", WRONG, ip="192.0.2.99").status_code == 200  # others are not locked


def test_an_address_is_locked_after_the_limit_whatever_the_account(alice, bob):
    for victim in ("a@acme.test", "b@acme.test", "c@acme.test"):
        _sign_in(victim, WRONG, ip="198.51.100.20")
    assert _sign_in("bob@acme.test", RIGHT, ip="198.51.100.20").status_code == 429
    assert _sign_in("bob@acme.test", RIGHT, ip="198.51.100.21").status_code == 302


def test_a_successful_sign_in_resets_the_count(alice):
    for _ in range(2):
        _sign_in("alice@acme.test", WRONG)
    assert _sign_in("alice@acme.test", RIGHT).status_code == 302
    for _ in range(2):
        _sign_in("alice@acme.test", WRONG)
    assert _sign_in("alice@acme.test", RIGHT).status_code == 302


def test_x_forwarded_for_is_not_trusted_by_default(alice):
    for n in range(3):
        _sign_in(f"user{n}@acme.test", WRONG, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert _sign_in("alice@acme.test", RIGHT, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_behind_a_configured_proxy_the_client_is_the_address_it_appended(alice, settings):
    settings.TOKONOMICS_TRUSTED_PROXY_COUNT = 1
    for n in range(3):  # the client may prepend anything; the proxy appends the real address
        _sign_in(f"user{n}@acme.test", WRONG, ip="10.0.0.1", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 203.0.113.50")
    assert _sign_in("alice@acme.test", RIGHT, ip="10.0.0.1",
                    HTTP_X_FORWARDED_FOR="203.0.113.50").status_code == 429
    assert _sign_in("alice@acme.test", RIGHT, ip="10.0.0.1",
                    HTTP_X_FORWARDED_FOR="203.0.113.50, 203.0.113.51").status_code == 302


def test_the_admin_login_is_throttled_too(superuser):
    client = Client(REMOTE_ADDR="198.51.100.30")
    for _ in range(3):
        client.post("/admin/login/", {"username": "root@ops.test", "password": WRONG})
    response = client.post("/admin/login/", {"username": "root@ops.test", "password": "operator password 1"})
    assert response.status_code == 429


def test_a_sign_in_never_clears_another_persons_failures(alice, bob):
    """bob guesses alice's password from his address, then signs in as himself there: that success is
    his, and must not wipe the guesses against alice (else guessing never reaches her limit)."""
    for _ in range(2):
        assert _sign_in("alice@acme.test", WRONG, ip="198.51.100.40").status_code == 200
    assert _sign_in("bob@acme.test", RIGHT, ip="198.51.100.40").status_code == 302
    assert _sign_in("alice@acme.test", WRONG, ip="198.51.100.40").status_code == 429  # her third
    assert _sign_in("alice@acme.test", RIGHT, ip="192.0.2.50").status_code == 429

def test_a_persons_own_success_resets_only_their_count(alice, bob):
    for _ in range(2):
        _sign_in("Alice@Acme.test", WRONG, ip="198.51.100.42")
        _sign_in("bob@acme.test", WRONG, ip="198.51.100.43")
    assert _sign_in("alice@acme.test", RIGHT, ip="198.51.100.44").status_code == 302  # resets alice
    for _ in range(2):
        _sign_in("alice@acme.test", WRONG, ip="198.51.100.45")
    assert _sign_in("alice@acme.test", RIGHT, ip="198.51.100.46").status_code == 302
    _sign_in("bob@acme.test", WRONG, ip="198.51.100.47")  # bob's third: his count was never reset
    assert _sign_in("bob@acme.test", RIGHT, ip="198.51.100.48").status_code == 429

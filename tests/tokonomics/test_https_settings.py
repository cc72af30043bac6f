"""DEBUG=0 behind a plain-HTTP balancer: the health and metrics probes are never redirected to https, and the
redirect, the Secure cookies and the trusted forwarded-proto header are set from the environment."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.test import Client, override_settings

from ..support import REPO, process_env


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_probes_are_not_redirected_to_https(path: str) -> None:
    with override_settings(SECURE_SSL_REDIRECT=True):
        response = Client().get(path)
    assert response.status_code == 200


@pytest.mark.django_db
def test_pages_are_still_redirected_to_https() -> None:
    with override_settings(SECURE_SSL_REDIRECT=True):
        response = Client().get("/login/")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


def _production_settings(**env: str) -> dict:
    names = ["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER",
             "SECURE_REDIRECT_EXEMPT"]
    code = ("import django, json; django.setup(); from django.conf import settings; "
            f"print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env=process_env(DJANGO_SETTINGS_MODULE="tokonomics.settings", DEBUG="0", **env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_defaults_redirect_and_trust_x_forwarded_proto() -> None:
    values = _production_settings()
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_plain_http_deployment_turns_redirect_cookies_and_header_off() -> None:
    values = _production_settings(SECURE_SSL_REDIRECT="0", SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0",
                                  SECURE_PROXY_SSL_HEADER="")
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SESSION_COOKIE_SECURE"] is False and values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_PROXY_SSL_HEADER"] is None


def test_balancer_header_is_configurable() -> None:
    values = _production_settings(SECURE_PROXY_SSL_HEADER="X-Forwarded-Protocol")
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTOCOL", "https"]

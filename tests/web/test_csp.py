"""Content-Security-Policy: every page says default-src 'self' and runs no inline script; the templates hold no
inline script, event handler, style attribute or un-nonced <style>, so the policy blocks nothing of ours."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse

from billing.models import Budget

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
EMAILS = {"alerts/email.html"}  # read in mail clients, never under the site's policy
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    "event handler": re.compile(r"\son[a-z]+\s*=", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "un-nonced style element": re.compile(r"<style(?![^>]*\bnonce=)[^>]*>", re.I),
    "hx-on": re.compile(r"\shx-on", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
}


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part}


@pytest.mark.parametrize("template", sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html")
                                            if str(p.relative_to(TEMPLATES)) not in EMAILS))
def test_templates_hold_nothing_inline(template: str) -> None:
    text = (TEMPLATES / template).read_text()
    found = {name for name, pattern in INLINE.items() if pattern.search(text)}
    assert not found, f"{template}: {found}"


def test_every_main_page_has_the_policy_and_nothing_it_would_block(client, alice, acme) -> None:
    Budget.objects.create(account=acme, scope="account", period="month", limit_usd=Decimal("1"), hard=True)
    client.force_login(alice)
    pages = [reverse(name, args=["acme"]) for name in ("dashboard", "key_list", "budget_list", "provider_list",
                                                       "alert_settings", "team", "account_settings", "audit_log")]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = _policy(response)
        assert policy["default-src"] == ["'self'"]
        assert "'unsafe-inline'" not in policy.get("script-src", policy["default-src"])
        assert "'unsafe-eval'" not in policy.get("script-src", policy["default-src"])
        body = response.content.decode()
        found = {name for name, pattern in INLINE.items() if pattern.search(body)}
        assert not found, f"{url}: {found}"
        nonce = re.search(r"<style nonce=\"([^\"]+)\">", body)
        assert nonce and f"'nonce-{nonce.group(1)}'" in policy["style-src"]
        assert '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false, "allowEval": false}\'>' in body


def test_sign_in_page_and_api_docs_have_the_policy(client) -> None:
    for url in ("/login/", "/api/v1/docs"):
        response = client.get(url)
        assert _policy(response)["default-src"] == ["'self'"], url

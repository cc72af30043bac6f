"""The Content-Security-Policy in a real browser: the main pages load, HTMX works, and Chromium reports no
violation — nothing of ours is inline, and the sizes set from data attributes are applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ..support import Stack, user_with_seat

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

OWNER, PASSWORD = "alice@acme.test", "correct horse battery"
PAGES = ["/a/acme/", "/a/acme/calls/", "/a/acme/keys/", "/a/acme/budgets/", "/a/acme/providers/", "/a/acme/alerts/",
         "/a/acme/team/", "/a/acme/settings/", "/a/acme/audit/", "/api/v1/docs"]
# Recorded by the page itself, before any of its scripts run.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def owner_with_usage(stack: Stack):
    from billing.models import Budget
    from billing.usage.ledger import usage_record_batch

    Budget.objects.create(account=stack.account, scope="account", period="month", limit_usd=Decimal("1"), hard=True)
    usage_record_batch(events=[{
        "request_id": "req_csp_1", "account_id": stack.account.pk, "key_id": None, "provider": "openai",
        "model": "gpt-4o-mini", "feature": "support-bot", "tenant": "globex", "environment": "production",
        "tags": {}, "input_tokens": 1000, "output_tokens": 500, "cost_usd": "0.25", "status_code": 200,
        "latency_ms": 120, "created_at": (datetime.now(UTC) - timedelta(minutes=5)).timestamp()}])
    return user_with_seat(OWNER, stack.account, "owner")


def test_main_pages_break_no_rule_of_the_policy(
    stack: Stack, owner_with_usage, browser: Browser, page: Page
) -> None:
    base = stack.proxy
    page.context.add_init_script(RECORD_VIOLATIONS)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(f"{base}/login/")
    page.fill("#id_username", OWNER)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/a/acme/")

    violations: dict[str, list[str]] = {}
    for path in PAGES:
        response = page.goto(f"{base}{path}")
        assert response is not None and response.ok, path
        assert "default-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
        if found := page.evaluate("window.cspViolations"):
            violations[path] = found
        if path == "/a/acme/":
            # The chart's tallest bar, sized by app.js from its data attribute; HTMX is loaded and polling.
            tallest = page.locator(".chart > div[data-height='100']").first
            assert tallest.evaluate("element => element.style.height") == "100%"
            assert page.evaluate("typeof window.htmx") == "object"
    assert not violations, violations
    refused = [line for line in console if "Content Security Policy" in line]
    assert not refused, refused

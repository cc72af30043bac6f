"""The dashboard's live region refreshes without fighting the user: it is morphed (only changed values are
written), so keyboard focus and a text selection survive refresh after refresh while new calls arrive; a poll
waits while the pointer is on one of its controls; a polite live summary says what changed. And the call log,
filtered, in a real browser."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
import pytest
from django.db import connection

from ..support import Stack, usage_event, user_with_seat

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
from playwright.sync_api import Page, expect  # noqa: E402

OWNER, PASSWORD = "alice@acme.test", "correct horse battery"
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective));
"""


def _record_calls(account_id: int, first: int, count: int, **fields) -> None:
    """Store calls from a thread of its own: with Playwright running, the test thread may not touch the ORM."""
    from billing.usage.records import usage_record_batch

    def write() -> None:
        try:
            now = datetime.now(UTC).timestamp()
            usage_record_batch(events=[usage_event(account_id, n, prefix="req_live", **{
                "feature": "support-bot", "tenant": f"tenant-{n}", "created_at": now - 60 + n / 1000, **fields})
                for n in range(first, first + count)])
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=10)


@pytest.fixture
def owner(stack: Stack):
    owner = user_with_seat(OWNER, stack.account, "owner")
    _record_calls(stack.account.pk, 0, 1)  # a breakdown row whose link is focused, a recent call to select
    return owner


def _sign_in(page: Page, base: str) -> None:
    page.context.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{base}/login/")
    page.fill("#id_username", OWNER)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/a/acme/")
    page.locator("h1").hover()  # not where "Sign in" was: a pointer resting on a live control pauses the refresh


SELECT_TENANT = """() => {
    const cell = [...document.querySelectorAll('#dashboard-live td')].find(td => td.textContent === 'tenant-0');
    const range = document.createRange();
    range.selectNodeContents(cell);
    document.getSelection().removeAllRanges();
    document.getSelection().addRange(range);
    window.selectedNode = range.startContainer.firstChild || range.startContainer;
}"""
STATE = """() => {
    const selection = document.getSelection();
    return {
        focusKept: document.activeElement === window.focusedNode,
        focusInLive: document.activeElement.closest('#dashboard-live') !== null,
        selection: selection.toString(),
        selectionKept: !selection.isCollapsed && selection.containsNode(window.selectedNode, true),
        regionKept: document.getElementById('dashboard-live') === window.regionNode,
    };
}"""


def test_focus_and_selection_survive_refreshes_while_the_values_update(stack: Stack, owner, page: Page) -> None:
    _sign_in(page, stack.proxy)
    link = page.locator("#breakdown-feature a", has_text="support-bot")
    link.focus()
    page.evaluate("window.focusedNode = document.activeElement;"
                  "window.regionNode = document.getElementById('dashboard-live')")
    page.evaluate(SELECT_TENANT)
    spend = page.get_by_test_id("total-spend")
    summary = page.locator("#dashboard-summary")
    expect(summary).to_have_attribute("aria-live", "polite")

    for cycle in range(3):  # three refreshes, each with new calls and a new total
        before = spend.inner_text()
        _record_calls(stack.account.pk, 1 + 2 * cycle, 2)
        expect(spend).not_to_have_text(before, timeout=8_000)  # one 2 s poll, with room for a slow machine
        expect(summary).to_contain_text(f"over {3 + 2 * cycle} calls")
        assert page.evaluate(STATE) == {"focusKept": True, "focusInLive": True, "selection": "tenant-0",
                                        "selectionKept": True, "regionKept": True}, cycle
    assert page.locator("#dashboard-live td", has_text="tenant-6").count() == 1  # the new calls are listed
    assert page.evaluate("window.cspViolations") == []


def test_a_poll_waits_while_the_pointer_is_on_a_control(stack: Stack, owner, page: Page) -> None:
    _sign_in(page, stack.proxy)
    spend = page.get_by_test_id("total-spend")
    before = spend.inner_text()
    page.locator("#breakdown-feature a", has_text="support-bot").hover()
    _record_calls(stack.account.pk, 1, 2)
    live = page.locator("#dashboard-live")
    expect(live).to_have_attribute("data-paused", "hover", timeout=5_000)
    page.wait_for_timeout(4_500)  # two more polls skipped
    expect(spend).to_have_text(before)
    page.locator("h1").hover()  # off the controls
    expect(spend).not_to_have_text(before, timeout=8_000)
    assert live.get_attribute("data-paused") is None


def test_call_log_filters_pages_and_exports_in_the_browser(stack: Stack, owner, page: Page) -> None:
    _record_calls(stack.account.pk, 100, 3, status_code=429, denied_scope="tenant_budget", cost_usd="0",
                  input_tokens=0, output_tokens=0)
    _sign_in(page, stack.proxy)
    page.get_by_role("link", name="Calls").first.click()
    expect(page).to_have_url(f"{stack.proxy}/a/acme/calls/")
    expect(page.locator("#call-list tbody tr")).to_have_count(4)

    page.select_option("#calls-status", "denied")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(f"{stack.proxy}/a/acme/calls/?status=denied")
    rows = page.locator("#call-list tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("denied · tenant")  # the scope that refused it
    expect(page.get_by_role("link", name="Remove filter status = denied")).to_be_visible()

    csv_href = page.get_by_role("link", name="CSV").get_attribute("href")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    export = httpx.get(f"{stack.proxy}{csv_href}", cookies=cookies)  # streamed by the ASGI server
    assert export.status_code == 200
    assert 'filename="acme-calls-status-denied.csv"' in export.headers["content-disposition"]
    assert len(export.text.splitlines()) == 4 and export.text.count("tenant_budget") == 3

    rows.first.get_by_role("link", name="req_live_102").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("req_live_102")
    expect(page.get_by_text("never stores content")).to_be_visible()
    page.get_by_role("link", name="← Calls").click()
    expect(page).to_have_url(f"{stack.proxy}/a/acme/calls/?status=denied")
    assert page.evaluate("window.cspViolations") == []

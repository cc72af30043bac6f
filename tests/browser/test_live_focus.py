"""The dashboard's live region is swapped whole when the spend moves: a keyboard user's focus inside it
survives the swap (static/tokonomics/app.js), rather than falling back to the top of the page."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from ..support import Stack, usage_event, user_with_seat

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
from playwright.sync_api import Page, expect  # noqa: E402

OWNER, PASSWORD = "alice@acme.test", "correct horse battery"


def _record_calls(account_id: int, first: int, count: int) -> None:
    """Store calls from a thread of its own: with Playwright running, the test thread may not touch the ORM."""
    from billing.usage.records import usage_record_batch

    def write() -> None:
        try:
            now = datetime.now(UTC).timestamp()
            usage_record_batch(events=[usage_event(account_id, n, prefix="req_focus", feature="support-bot",
                                                   created_at=now - 60) for n in range(first, first + count)])
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=10)


@pytest.fixture
def owner(stack: Stack):
    owner = user_with_seat(OWNER, stack.account, "owner")
    _record_calls(stack.account.pk, 0, 1)  # a breakdown row, whose link the test focuses
    return owner


def test_focus_inside_the_live_region_survives_its_refresh(stack: Stack, owner, page: Page) -> None:
    base = stack.proxy
    page.goto(f"{base}/login/")
    page.fill("#id_username", OWNER)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/a/acme/")

    link = page.locator("#breakdown-feature a", has_text="support-bot")
    link.focus()
    href = link.get_attribute("href")
    spend = page.get_by_test_id("total-spend")
    before = spend.inner_text()
    page.evaluate("document.getElementById('dashboard-live').dataset.generation = 'old'")

    _record_calls(stack.account.pk, 1, 3)
    expect(spend).not_to_have_text(before, timeout=8_000)  # one 2 s poll, with room for a slow machine
    assert page.evaluate("document.getElementById('dashboard-live').dataset.generation") is None  # swapped
    focused = page.evaluate("""() => {
        const element = document.activeElement;
        return {inLive: element.closest('#dashboard-live') !== null, href: element.getAttribute('href')};
    }""")
    assert focused == {"inLive": True, "href": href}

"""Create → edit → delete for every object of the web app, in Chromium against the live stack (web app and
proxy under uvicorn, the simulator upstream): provider endpoints (with a connection test), keys (with a
rotation whose old secret keeps working through the proxy), budgets, alert channels and rules, prices and API
tokens. Every destructive step goes through its confirm page; one of them with JavaScript turned off."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from ..support import CHAT, Stack, user_with_seat

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

OWNER, PASSWORD = "alice@acme.test", "correct horse battery"
JOURNEY_SECONDS = 90  # ~25 s here; bounded so a hang fails instead of stalling the suite


@pytest.fixture
def owner(stack: Stack):
    # Made before the browser starts: with Playwright running, this thread may not touch the ORM.
    user_with_seat("frank@acme.test", stack.account, "viewer")
    return user_with_seat(OWNER, stack.account, "owner")


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", OWNER)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/a/acme/")


def _confirm(page: Page, row_text: str, link: str, button: str) -> None:
    """Follow a row's destructive link to its confirm page, and confirm."""
    page.locator("tr", has_text=row_text).get_by_role("link", name=link).click()
    expect(page.locator("#confirm")).to_be_visible()
    page.get_by_role("button", name=button).click()


def _call(base: str, secret: str) -> int:
    return httpx.post(f"{base}/proxy/openai/chat/completions", json=CHAT,
                      headers={"Authorization": f"Bearer {secret}"}, timeout=10).status_code


def _providers(page: Page, base: str, sim: str) -> None:
    page.goto(f"{base}/a/acme/providers/")
    page.fill("#endpoint-form [name=slug]", "inhouse")
    page.select_option("#endpoint-form [name=wire_format]", "openai")
    page.fill("#endpoint-form [name=base_url]", f"{sim}/v1")
    page.fill("#endpoint-form [name=credential]", "sk-inhouse")
    page.get_by_role("button", name="Save endpoint").click()
    row = page.locator("tr", has_text="inhouse")
    expect(row).to_contain_text(f"{base}/proxy/inhouse")
    expect(row.get_by_role("button", name="Copy")).to_be_visible()
    row.get_by_role("link", name="Edit").click()
    expect(page.locator("#endpoint-form [name=slug]")).to_be_disabled()
    page.fill("#endpoint-form [name=pricing_provider]", "openai")
    page.get_by_role("button", name="Save endpoint").click()
    expect(page.locator("tr", has_text="inhouse")).to_contain_text("openai")
    page.locator("tr", has_text="inhouse").get_by_role("button", name="Test connection").click()
    expect(page.locator("#endpoint-check")).to_contain_text("Connected to inhouse: it answered 200")
    _confirm(page, "inhouse", "Delete", "Delete endpoint")
    expect(page.locator(".messages")).to_contain_text("inhouse deleted")
    expect(page.locator("tr", has_text="inhouse")).to_have_count(0)


def _keys(page: Page, base: str) -> None:
    page.goto(f"{base}/a/acme/keys/")
    page.fill("#key-form [name=name]", "crud")
    page.get_by_role("button", name="Create key").click()
    first = page.locator("#new-key-value").inner_text().strip()
    assert re.fullmatch(r"mk_\S{20,}", first), first
    page.reload()  # a GET: no resubmit prompt, no second key, the secret gone
    expect(page.locator("#new-key-value")).to_have_count(0)
    expect(page.locator("tr", has_text="crud")).to_have_count(1)
    page.locator("tr", has_text="crud").get_by_role("link", name="Edit").click()
    page.fill("#key-form [name=name]", "crud-renamed")
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("tr", has_text="crud-renamed")).to_have_count(1)
    assert _call(base, first) == 200
    page.locator("tr", has_text="crud-renamed").get_by_role("link", name="Rotate").click()
    page.select_option("[name=grace]", "1h")
    page.get_by_role("button", name="Rotate key").click()
    second = page.locator("#new-key-value").inner_text().strip()
    assert second != first
    expect(page.locator("tr", has_text="crud-renamed")).to_contain_text("old secret valid until")
    # Through the proxy: both secrets work inside the grace hour.
    deadline = time.monotonic() + 5
    while _call(base, second) != 200:  # the proxy sees the new configuration version within its poll
        assert time.monotonic() < deadline, "the rotated key's new secret was not accepted"
        time.sleep(0.2)
    assert _call(base, first) == 200
    _confirm(page, "crud-renamed", "Revoke", "Revoke key")
    expect(page.locator("tr", has_text="crud-renamed")).to_contain_text("revoked")


def _budgets(page: Page, base: str) -> None:
    page.goto(f"{base}/a/acme/budgets/")
    page.select_option("#budget-form [name=scope]", "account")
    page.select_option("#budget-form [name=period]", "month")
    page.fill("#budget-form [name=limit_usd]", "7")
    page.get_by_role("button", name="Save budget").click()
    expect(page.locator("table").first).to_contain_text("$7.00")
    page.locator("tr", has_text="$7.00").get_by_role("link", name="Edit").click()
    page.fill("#budget-form [name=limit_usd]", "9")
    page.get_by_role("button", name="Save budget").click()
    expect(page.locator("table").first).to_contain_text("$9.00")


def _budget_delete_without_javascript(browser: Browser, base: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        _sign_in(page, base)
        page.goto(f"{base}/a/acme/budgets/")
        _confirm(page, "$9.00", "Delete", "Delete budget")
        expect(page.locator(".messages")).to_contain_text("Budget deleted")
        expect(page.locator("tr", has_text="$9.00")).to_have_count(0)
    finally:
        context.close()


def _alerts(page: Page, base: str) -> None:
    page.goto(f"{base}/a/acme/alerts/")
    form = page.locator("#channel-form")
    page.select_option("#channel-form [name=kind]", "email")
    expect(form.locator("[name=url]")).to_be_hidden()
    expect(form.locator("[name=emails]")).to_be_visible()
    page.select_option("#channel-form [name=kind]", "webhook")
    expect(form.locator("[name=emails]")).to_be_hidden()
    page.fill("#channel-form [name=name]", "hook")
    page.fill("#channel-form [name=url]", "https://hooks.example.com/tokonomics")
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator("#new-webhook-secret-value")).to_contain_text("whsec_")
    expect(page.locator("#new-webhook-secret").get_by_role("button", name="Copy")).to_be_visible()
    page.locator("tr", has_text="hook").get_by_role("link", name="Edit").click()
    page.fill("#alert-edit-form [name=name]", "hook-2")
    page.get_by_role("button", name="Save").click()
    row = page.locator("tr", has_text="hook-2")
    row.get_by_role("button", name="Disable").click()
    expect(page.locator("tr", has_text="hook-2")).to_contain_text("disabled")
    _confirm(page, "hook-2", "Delete", "Delete channel")
    expect(page.locator("tr", has_text="hook-2")).to_have_count(0)

    page.select_option("[name=scope]", "feature")
    page.get_by_role("button", name="Add rule").click()
    rule = page.locator("tr[id^=rule-]")
    expect(rule).to_contain_text("over 15 min")
    rule.get_by_role("link", name="Edit").click()
    page.fill("#alert-edit-form [name=window_minutes]", "30")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("tr[id^=rule-]")).to_contain_text("over 30 min")
    page.locator("tr[id^=rule-]").get_by_role("button", name="Disable").click()
    expect(page.locator("tr[id^=rule-]")).to_contain_text("disabled")
    page.locator("tr[id^=rule-]").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete rule").click()
    expect(page.locator("tr[id^=rule-]")).to_have_count(0)


def _prices(page: Page, base: str) -> None:
    page.goto(f"{base}/a/acme/prices/")
    page.fill("#price-form [name=provider]", "openai")
    page.fill("#price-form [name=model]", "gpt-4o-mini")
    page.fill("#price-form [name=input_per_mtok]", "0.15")
    page.fill("#price-form [name=output_per_mtok]", "0.6")
    page.get_by_role("button", name="Add price").click()
    expect(page.locator("#price-table")).to_contain_text("$0.6")
    page.locator("tr", has_text="gpt-4o-mini").get_by_role("link", name="Edit").click()
    page.fill("#price-form [name=output_per_mtok]", "0.8")
    page.get_by_role("button", name="Save price").click()
    expect(page.locator("#price-table")).to_contain_text("$0.8")
    _confirm(page, "gpt-4o-mini", "Delete", "Delete price")
    expect(page.locator("#price-table")).to_contain_text("No prices of your own")


def _tokens(page: Page, base: str) -> None:
    page.goto(f"{base}/a/acme/api-tokens/")
    page.fill("#token-form [name=name]", "terraform")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token-value").inner_text().strip()
    assert token.startswith("mt_")
    assert httpx.get(f"{base}/api/v1/budgets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    _confirm(page, "terraform", "Revoke", "Revoke token")
    expect(page.locator("tr", has_text="terraform")).to_contain_text("revoked")
    assert httpx.get(f"{base}/api/v1/budgets", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def _seat_removal_with_htmx_confirm(page: Page, base: str) -> None:
    """With JavaScript the Remove button asks in a dialog (hx-confirm) and posts; the page stays."""
    page.goto(f"{base}/a/acme/team/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="frank@acme.test").get_by_role("button", name="Remove").click()
    expect(page.locator("#team")).to_contain_text("frank@acme.test no longer has a seat")
    expect(page.locator("#team tr", has_text="frank@acme.test")).to_have_count(0)
    expect(page).to_have_url(f"{base}/a/acme/team/")


def test_create_edit_and_delete_every_object(stack: Stack, owner, browser: Browser, page: Page) -> None:
    started = time.monotonic()
    base = stack.proxy
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    refused: list[str] = []  # what the Content-Security-Policy blocked, as Chromium logs it
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text
            else None)
    _sign_in(page, base)
    _providers(page, base, stack.sim)
    _keys(page, base)
    _budgets(page, base)
    _budget_delete_without_javascript(browser, base)
    _alerts(page, base)
    _prices(page, base)
    _tokens(page, base)
    _seat_removal_with_htmx_confirm(page, base)
    assert not page_errors, page_errors
    assert not refused, refused
    assert time.monotonic() - started < JOURNEY_SECONDS

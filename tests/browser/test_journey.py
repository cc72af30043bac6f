"""A new owner's first session, in a real browser against the live stack (web app and proxy under uvicorn,
the simulator upstream): sign in, invite a teammate who accepts in a browser of their own, create a key,
set a budget, then spend through the proxy with the `openai` SDK and watch the open dashboard update itself."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest
from django.db import connection

from ..support import Stack, user_with_seat

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

OWNER, PASSWORD = "alice@acme.test", "correct horse battery"
INVITEE, INVITEE_PASSWORD = "erin@acme.test", "erin's own long passphrase"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
LIVE_UPDATE_SECONDS = 8  # one 2 s poll after the next ingest, with room for a slow CI machine
JOURNEY_SECONDS = 40  # the journey alone (~11 s here); with set-up and teardown (~10 s) it stays under a minute


@pytest.fixture
def owner(stack: Stack):
    # Made here, before the browser starts: with Playwright running, this thread may not touch the ORM.
    return user_with_seat(OWNER, stack.account, "owner")


class Ingester(threading.Thread):
    """The Celery beat task's job, in the test: drain the usage streams into the database every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.written = 0

    def run(self) -> None:
        from billing.usage.ledger import usage_ingest

        try:
            while not self.stop.wait(0.5):
                self.written += usage_ingest(max_seconds=0.2)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which raises it
            self.error = exc
        finally:
            connection.close()  # this thread's own connection: it would keep the test database busy

    def status(self) -> str:
        error = f"{type(self.error).__name__}: {self.error}" if self.error else "none"
        return f"ingester: {self.written} records written, alive {self.is_alive()}, error {error}"


@pytest.fixture
def ingester() -> Iterator[Ingester]:
    thread = Ingester()
    yield thread
    if thread.is_alive():
        thread.stop.set()
        thread.join(timeout=5)


def _sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/a/acme/")  # one seat: home goes straight to the dashboard


def _invite_and_accept(page: Page, browser: Browser, base: str) -> None:
    page.goto(f"{base}/a/acme/team/")
    page.fill("#invite-form [name=email]", INVITEE)
    page.select_option("#invite-form [name=role]", "member")
    page.get_by_role("button", name="Send invitation").click()
    link = page.locator("#invitation-link")
    expect(link).to_contain_text("/invitations/")
    # SITE_URL names the deployment, not this test's ephemeral port: keep the path only.
    invitation_path = urlsplit(link.inner_text().strip()).path

    invitee_context = browser.new_context()
    try:
        invitee = invitee_context.new_page()
        invitee.goto(f"{base}{invitation_path}")
        expect(invitee.get_by_role("heading", name="Join Acme")).to_be_visible()
        invitee.fill("[name=password1]", INVITEE_PASSWORD)
        invitee.fill("[name=password2]", INVITEE_PASSWORD)
        invitee.get_by_role("button", name="Create my user and join").click()
        expect(invitee).to_have_url(f"{base}/a/acme/")
        expect(invitee.locator(".messages")).to_contain_text("Welcome to Acme")
        expect(invitee.locator(".who")).to_contain_text(INVITEE)
    finally:
        invitee_context.close()

    page.goto(f"{base}/a/acme/team/")
    expect(page.locator("#team table").first).to_contain_text(INVITEE)
    expect(page.get_by_text("Pending invitations")).to_have_count(0)


def _create_key(page: Page, base: str, name: str) -> str:
    page.goto(f"{base}/a/acme/keys/")
    page.fill("#key-form [name=name]", name)
    page.get_by_role("button", name="Create key").click()
    plaintext = page.locator("#new-key-value").inner_text().strip()
    assert re.fullmatch(r"mk_\S{20,}", plaintext), plaintext
    return plaintext


def _set_budget(page: Page, base: str) -> None:
    page.goto(f"{base}/a/acme/budgets/")
    page.select_option("#budget-form [name=scope]", "account")
    page.select_option("#budget-form [name=period]", "month")
    page.fill("#budget-form [name=limit_usd]", "0.05")
    page.get_by_role("button", name="Save budget").click()  # HTMX post, answered with HX-Redirect
    expect(page.locator(".messages")).to_contain_text("Budget saved")
    expect(page.locator("table").first).to_contain_text("$0.05")


def test_first_session_ends_with_live_spend_on_the_dashboard(
    stack: Stack, owner, ingester: Ingester, browser: Browser, page: Page
) -> None:
    started = time.monotonic()
    base = stack.proxy  # one ASGI app serves the web app and /proxy/
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    refused: list[str] = []  # what the Content-Security-Policy blocked, as Chromium logs it
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text
            else None)

    _sign_in(page, base, OWNER, PASSWORD)
    _invite_and_accept(page, browser, base)
    plaintext = _create_key(page, base, "journey")
    _set_budget(page, base)

    page.goto(f"{base}/a/acme/")
    spend = page.get_by_test_id("total-spend")
    expect(spend).to_have_text("$0.00")
    expect(page.locator("#dashboard-live")).to_contain_text("No calls yet")
    page.evaluate("window.journeyMark = 'still the same document'")  # gone if anything reloads the page

    ingester.start()
    client = openai.OpenAI(base_url=f"{base}/proxy/openai", api_key=plaintext, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello to the dashboard."}], max_tokens=32,
        extra_headers={"X-Feature-Name": "support-bot", "X-Tenant-ID": "globex"},
    )
    assert reply.choices[0].message.content
    called = time.monotonic()

    try:
        expect(spend).not_to_have_text("$0.00", timeout=LIVE_UPDATE_SECONDS * 1000)
    except AssertionError as missed:
        raise AssertionError(f"{missed}\n{ingester.status()}") from None
    live_after = time.monotonic() - called
    assert ingester.error is None, ingester.status()
    assert page.evaluate("window.journeyMark") == "still the same document", "the dashboard was reloaded"
    spent = spend.inner_text()
    assert Decimal(spent.removeprefix("$").replace(",", "")) > 0, spent
    live = page.locator("#dashboard-live")
    expect(live).to_contain_text(re.compile(r"\b1 calls? ·"))
    recent_calls = live.locator(".card", has=page.get_by_role("heading", name="Recent calls"))
    call_row = recent_calls.locator("tr", has_text="gpt-4o-mini")
    expect(call_row).to_have_count(1)
    for shown in ("support-bot", "globex", "journey", "200"):  # feature, tenant, key name, status
        expect(call_row).to_contain_text(shown)
    # The budget row moved too: its spend is the call's cost.
    expect(live.locator("tr", has_text="account / month")).to_contain_text(spent)

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot} (spend live {live_after:.1f} s after the call; "
          f"journey {time.monotonic() - started:.1f} s)")
    assert not page_errors, page_errors
    assert not refused, refused
    assert time.monotonic() - started < JOURNEY_SECONDS

"""Headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser) driven by Playwright.

While Playwright's sync API is active, its event loop counts as running in this thread, so Django refuses
ORM calls here (SynchronousOnlyOperation). Hence: write to the database in fixtures set up *before* the
browser (request `stack` and such first), or from another thread; `browser` depends on `transactional_db`
so that it is closed before the database is flushed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from django.db import connections

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium phones home at start-up, and this machine's closed
# network refuses it.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture
def browser(transactional_db, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # Django under ASGI runs each request's sync code in a thread of its own: a persistent connection
    # (CONN_MAX_AGE > 0) is never reused there and stays open past the test, keeping the test database busy.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (its own cookies); make more contexts from `browser` for other people."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()

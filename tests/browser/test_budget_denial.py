"""Issue 15 §2 in the browser: a key budget denies a call that sets no max_tokens; the dashboard's recent calls
say which budget refused it and what it asked to reserve, the Budgets page shows spent, reserved and
remaining, and its link leads to the page that explains reservations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Budget
from billing.usage.ledger import usage_ingest

from ..support import CHAT, Stack, chat, user_with_seat

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
from playwright.sync_api import Page, expect  # noqa: E402

OWNER, PASSWORD = "alice@acme.test", "correct horse battery"


@pytest.fixture
def denied(stack: Stack):
    """Before the browser starts (Playwright's loop forbids the ORM in the test thread): a $0.005 daily key
    budget, and a gpt-4o-mini call without max_tokens, whose estimate (16,384 output tokens) does not fit."""
    user_with_seat(OWNER, stack.account, "owner")
    Budget.objects.create(account=stack.account, scope="key", match="main", period="day",
                          limit_usd=Decimal("0.005"), hard=True)
    response = chat(stack, {key: value for key, value in CHAT.items() if key != "max_tokens"})
    assert response.status_code == 429 and response.headers["x-tokonomics-denied-scope"] == "key_budget"
    usage_ingest(max_seconds=1)


def test_a_denial_is_explained_on_the_dashboard_and_the_budgets_page(stack: Stack, denied, page: Page) -> None:
    base = stack.proxy
    page.goto(f"{base}/login/")
    page.fill("#id_username", OWNER)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/a/acme/")

    recent = page.locator(".card", has=page.get_by_role("heading", name="Recent calls"))
    row = recent.locator("tr", has_text="gpt-4o-mini")
    expect(row).to_contain_text("denied · key budget")
    expect(row).to_contain_text("asked to reserve $0.0")  # the 16,384-token ceiling's price, not a rounding
    expect(row).to_contain_text("more than the key budget had left (key main)")

    row.get_by_role("link", name="Budgets").click()
    expect(page).to_have_url(f"{base}/a/acme/budgets/")
    budget = page.locator("tr[id^='budget-']")
    expect(budget).to_contain_text("$0.005000")  # the limit: under a cent, shown to the micro-dollar
    expect(page.get_by_role("columnheader", name="Reserved in flight")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Remaining")).to_be_visible()

    page.get_by_role("link", name="How budgets reserve, with a worked example").click()
    expect(page.locator("pre.doc")).to_contain_text("max_tokens")
    expect(page.locator("pre.doc")).to_contain_text("Worked example")

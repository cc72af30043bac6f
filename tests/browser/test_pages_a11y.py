"""Every page of the web app, found in the URLconf, at a desktop (1280 px) and a phone (390 px) width: axe-core
finds no serious or critical violation, the phone width scrolls no page sideways, and a full-page screenshot of
each is saved as an artifact (`$TOKONOMICS_ARTIFACTS_DIR`, else `artifacts/` at the repository's root, git-ignored).

Pages are listed from the URLconf, not by hand, so a new page is covered the day it is added: a route whose
URL needs a value this file cannot fill (a new kind of id) fails the test until a seeded object is named in
SEEDS. Routes that answer a GET with no HTML page (POST-only actions, CSV downloads, redirects) are skipped by
what they answer, and the skipped set is checked not to swallow the pages we know.

axe-core is the copy bundled by the `axe-playwright-python` package (axe.min.js, MPL-2.0): added to each page
as an init script through the DevTools protocol, which the Content-Security-Policy does not govern, so nothing
is downloaded at test time.
"""

from __future__ import annotations

import os
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest

from ..support import Stack, user_with_seat

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
axe_base = pytest.importorskip("axe_playwright_python.base", reason="axe-playwright-python is not installed")
from playwright.sync_api import Browser, BrowserContext  # noqa: E402

OWNER, PASSWORD = "alice@acme.test", "correct horse battery"
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
BLOCKING_IMPACTS = {"serious", "critical"}
# Routes that are not pages of this web app: Django's admin (its own look), the JSON API (its docs page is
# visited below), machine endpoints, and the identity provider's return leg (needs a live OIDC round trip).
NOT_PAGES = re.compile(r"^(admin/|api/v1/(?!docs$)|healthz$|metrics$|logout/$|sso/callback/$)")
# Seen anonymously: the pages of people who are not signed in.
PUBLIC = {"login", "password_reset", "password_reset_done", "password_reset_confirm", "password_reset_complete",
          "invitation_accept", "sso_domain_confirm", "sso_start"}
# Pages seen with the seeds' values that answer an error page on purpose: the seeded token is an invitation's,
# so the domain-confirmation link shows its "link not valid" page, which people meet too.
EXPECTED_STATUS = {"sso_domain_confirm": 400}
# Swagger UI's own markup on the API docs page (vendored by django-ninja: nested controls, its grey text) is not
# ours to fix; the page around it (language, title) is still checked.
AXE_EXCLUDE = {"openapi-view": ["#swagger-ui"]}
# Pages drawn by script after they load, and what shows they are drawn: the screenshot shows the page, and no
# request is cut off mid-way by closing it (which would leave a server thread's database connection open).
READY = {"openapi-view": "#swagger-ui .info"}
# What axe leaves alone: every table has a header row group and says what each header cell heads, and the
# navigation marks the page it is on.
SEMANTICS = """
(() => {
  const problems = [];
  document.querySelectorAll("table").forEach((table, i) => {
    if (!table.tHead) problems.push(`table ${i + 1} has no <thead>`);
  });
  document.querySelectorAll("th:not([scope])").forEach((th) => {
    problems.push(`<th> without scope: ${th.textContent.trim()}`);
  });
  document.querySelectorAll("#site-nav a").forEach((a) => {
    if (a.pathname === location.pathname && a.getAttribute("aria-current") !== "page")
      problems.push(`nav link ${a.textContent.trim()} lacks aria-current`);
  });
  return problems;
})()
"""
# The outermost elements that stick out past the right edge, to say what makes a page scroll sideways.
OVERFLOWING = """
(() => {
  const out = [];
  for (const element of document.body.querySelectorAll("*")) {
    if (element.getBoundingClientRect().right <= window.innerWidth + 0.5) continue;
    if (out.some((outer) => outer.contains(element))) continue;
    out.push(element);
  }
  return out.slice(0, 5).map((e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}.${e.className}`);
})()
"""


def _artifacts_dir() -> Path:
    root = os.environ.get("TOKONOMICS_ARTIFACTS_DIR") or Path(__file__).resolve().parents[2] / "artifacts"
    path = Path(root) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):  # this run's pictures only
        old.unlink()
    return path


def _routes() -> list[tuple[str, str, list[str]]]:
    """(route, name, names of its URL parameters) for every pattern of the URLconf, includes flattened."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found: list[tuple[str, str, list[str]]] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                route = route.lstrip("^").rstrip("$")
                name = pattern.name or re.sub(r"[^a-z0-9]+", "-", route.lower()).strip("-")
                found.append((route, name, re.findall(r"<(?:\w+:)?(\w+)>", route)))

    walk(get_resolver().url_patterns, "")
    return found


@pytest.fixture
def seeded(stack: Stack, settings) -> dict[str, str]:
    """The objects whose ids the pages' URLs need, made before the browser starts (see conftest)."""
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    from alerts.models import AlertChannel, AlertRule
    from billing.accounts.management_tokens import management_token_create
    from billing.accounts.team import seat_invite
    from billing.models import Account, Budget, PriceOverride, Seat, UsageRecord
    from billing.usage.ledger import usage_record_batch
    from proxy.models import ProviderEndpoint
    from tokonomics.audit import Actor

    owner = user_with_seat(OWNER, stack.account, "owner")
    # A second account: the navigation shows its switcher, and home lists both accounts instead of redirecting.
    globex = Account.objects.create(slug="globex", name="Globex", plan=stack.account.plan, timezone="UTC")
    Seat.objects.create(account=globex, user=owner, role="member")
    viewer = user_with_seat("vic@acme.test", stack.account, "viewer")
    budget = Budget.objects.create(account=stack.account, scope="account", period="month", limit_usd=10, hard=True)
    channel = AlertChannel.objects.create(account=stack.account, kind="webhook", name="ops",
                                          url="https://hooks.example.test/x")
    sent = seat_invite(actor_seat=Seat.objects.get(user=owner, account=stack.account), email="new@acme.test",
                       role="viewer")
    token = sent.url.rstrip("/").rsplit("/", 1)[-1]
    # One of each object the edit, detail and delete pages of the app take an id of.
    rule = AlertRule.objects.create(account=stack.account, scope="account", match="*")
    price = PriceOverride.objects.create(account=stack.account, provider="vllm-internal", model="llama-a11y",
                                         input_per_mtok=Decimal("0.6"), output_per_mtok=Decimal("0.8"))
    management_token, _ = management_token_create(account=stack.account, actor=Actor.of_user(owner), name="ci")
    usage_record_batch(events=[{
        "request_id": "req_a11y_1", "account_id": stack.account.pk, "key_id": stack.key.pk, "provider": "openai",
        "model": "gpt-4o-mini", "feature": "support-bot", "tenant": "globex", "environment": "production",
        "tags": {}, "input_tokens": 1000, "output_tokens": 500, "cost_usd": "0.25", "status_code": 200,
        "latency_ms": 120, "created_at": time.time() - 300}])
    endpoint = ProviderEndpoint.objects.filter(account=stack.account).order_by("pk").first()
    assert endpoint is not None
    from proxy.models import GuardrailPolicy, Route

    GuardrailPolicy.objects.create(account=stack.account, key=None, spec={"pii": {"types": ["email"]}})
    route = Route.objects.create(account=stack.account, name="support-default",
                                 targets=[{"endpoint": endpoint.slug, "model": "gpt-4o-mini"}])
    seeds = {
        "slug": stack.account.slug, "budget_id": str(budget.pk), "key_id": str(stack.key.pk),
        "channel_id": str(channel.pk), "seat_id": str(Seat.objects.get(user=viewer).pk),
        "dimension": "feature", "token": token, "invitation_id": str(sent.invitation.pk),
        # Only a POST (sending the confirmation) takes a domain id so far; a GET page taking one would answer
        # 404 here and fail the test until a real domain is seeded.
        "domain_id": "0",
        # A password reset link of the owner's with a stale token: the page says the link no longer works.
        "uidb64": urlsafe_base64_encode(force_bytes(owner.pk)),
        "rule_id": str(rule.pk), "price_id": str(price.pk), "token_id": str(management_token.pk),
        "endpoint_id": str(endpoint.pk), "call_id": str(UsageRecord.objects.get(request_id="req_a11y_1").pk),
        "kind": "csv",  # an export: not a page, skipped by its content type
        "target": "default",  # the account's guardrail policy (a key's own: its id)
        "route_id": str(route.pk),
    }
    return seeds


def _path(route: str, params: list[str], seeds: dict[str, str]) -> str:
    missing = [name for name in params if name not in seeds]
    assert not missing, f"route {route!r} needs {missing}: seed an object for it in SEEDS (seeded fixture)"
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda match: seeds[match.group(1)], route)


def _sign_in(context: BrowserContext, base: str) -> None:
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("#id_username", OWNER)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")  # the list of the owner's two accounts
    page.close()


def _is_page(context: BrowserContext, url: str, status: int) -> bool:
    """Whether a GET of `url` answers an HTML page (not a POST-only 405, a CSV download or a redirect)."""
    response = context.request.get(url, max_redirects=0)
    if response.status in (301, 302, 303, 405):
        return False
    assert response.status == status, f"{url}: {response.status}"
    return response.headers.get("content-type", "").startswith("text/html")


def _audit(
    context: BrowserContext, url: str, name: str, label: str, shots: Path, expect_status: int = 200
) -> list[str]:
    problems: list[str] = []
    page = context.new_page()
    try:
        response = page.goto(url)
        assert response is not None and response.status == expect_status, f"{url}: {response and response.status}"
        page.wait_for_load_state("load")
        if name in READY:
            page.wait_for_selector(READY[name])
        width = page.viewport_size["width"] if page.viewport_size else 0
        scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
        if scroll_width > page.evaluate("window.innerWidth"):
            problems.append(f"{label} {url}: {scroll_width} px wide at {width} px (scrolls sideways), "
                            f"past the edge: {page.evaluate(OVERFLOWING)}")
        problems += [f"{label} {url}: {problem}" for problem in page.evaluate(SEMANTICS)]
        context = {"exclude": [[selector] for selector in AXE_EXCLUDE.get(name, [])]} if name in AXE_EXCLUDE else None
        result = page.evaluate("(context) => axe.run(context || document, {resultTypes: ['violations']})", context)
        for violation in result["violations"]:
            if violation["impact"] in BLOCKING_IMPACTS:
                targets = [node["target"] for node in violation["nodes"][:3]]
                problems.append(f"{label} {url}: axe {violation['impact']} {violation['id']}: "
                                f"{violation['help']} at {targets}")
        page.screenshot(path=shots / f"{name}.{label}.png", full_page=True)
    finally:
        page.close()
    return problems


def _navigation_on_a_phone(browser: Browser, phone: BrowserContext, base: str) -> list[str]:
    """At 390 px the navigation folds behind a menu button that opens it; without script it stays open."""
    problems: list[str] = []
    page = phone.new_page()
    page.goto(f"{base}/a/acme/")
    toggle, nav = page.locator(".menu-toggle"), page.locator("#site-nav")
    if not toggle.is_visible() or nav.is_visible():
        problems.append("phone: the navigation is not folded behind a visible menu button")
    toggle.click()
    if not nav.is_visible() or toggle.get_attribute("aria-expanded") != "true":
        problems.append("phone: the menu button does not open the navigation")
    page.close()
    without_script = browser.new_context(viewport=WIDTHS["phone"], java_script_enabled=False,
                                         storage_state=phone.storage_state())
    page = without_script.new_page()
    page.goto(f"{base}/a/acme/")
    if not page.locator("#site-nav").is_visible() or page.locator(".menu-toggle").is_visible():
        problems.append("phone without script: the navigation is not simply open")
    if page.evaluate("document.scrollingElement.scrollWidth > innerWidth"):
        problems.append("phone without script: the dashboard scrolls sideways")
    without_script.close()
    return problems


def _focus_is_visible(desktop: BrowserContext, base: str) -> list[str]:
    """The keyboard's focus shows: a solid ring of at least 2 px on links and buttons reached with Tab."""
    problems: list[str] = []
    page = desktop.new_page()
    page.goto(f"{base}/a/acme/keys/")
    for _ in range(4):  # the skip link, the brand, the first tabs
        page.keyboard.press("Tab")
        ring = page.evaluate("(() => { const e = document.activeElement, s = getComputedStyle(e);"
                             " return [e.tagName, s.outlineStyle, parseFloat(s.outlineWidth)]; })()")
        if ring[1] in ("none", "") or ring[2] < 2:
            problems.append(f"focus on a {ring[0]} shows no ring: {ring}")
    page.close()
    return problems


def test_every_page_is_accessible_and_fits_a_phone(stack: Stack, seeded: dict[str, str], browser: Browser) -> None:
    base = stack.proxy
    shots = _artifacts_dir()
    routes = [(route, name, params) for route, name, params in _routes() if not NOT_PAGES.match(route)]
    assert any(name == "dashboard" for _, name, _ in routes), "the URLconf walk found no dashboard"

    contexts: dict[str, dict[str, BrowserContext]] = {}
    for label, viewport in WIDTHS.items():
        anonymous = browser.new_context(viewport=viewport)
        owner = browser.new_context(viewport=viewport)
        for context in (anonymous, owner):
            context.set_default_timeout(10_000)
            # In every page before its own scripts: sent to the browser once per context, not once per page.
            context.add_init_script(script=axe_base.AXE_SCRIPT)
        _sign_in(owner, base)
        contexts[label] = {"anonymous": anonymous, "owner": owner}

    pages: list[tuple[str, str, str, int]] = []  # (who, url, route name, status)
    for route, name, params in routes:
        who = "anonymous" if name in PUBLIC else "owner"
        url = base + _path(route, params, seeded)
        status = EXPECTED_STATUS.get(name, 200)
        if _is_page(contexts["desktop"][who], url, status):
            pages.append((who, url, name, status))
    visited = {url.removeprefix(base) for _, url, _, _ in pages}
    for known in ("/", "/a/acme/", "/a/acme/keys/", "/a/acme/budgets/", "/a/acme/team/", "/login/", "/api/v1/docs"):
        assert known in visited, f"{known} was not found among the pages: {sorted(visited)}"

    problems: list[str] = []
    for label, by_who in contexts.items():
        for who, url, name, status in pages:
            problems += _audit(by_who[who], url, name, label, shots, expect_status=status)
        # The error pages, as a signed-in person meets them.
        problems += _audit(by_who["owner"], f"{base}/a/acme/no-such-page/", "404", label, shots, expect_status=404)
    problems += _navigation_on_a_phone(browser, contexts["phone"]["owner"], base)
    problems += _focus_is_visible(contexts["desktop"]["owner"], base)
    for by_who in contexts.values():
        for context in by_who.values():
            context.close()

    assert not problems, "\n".join(problems)

"""What assistive technology reads from the main pages, checked on the rendered HTML (stdlib parser): every
table names its columns (thead, th scope), the active tab says so (aria-current), messages are announced
(role=status), and the tabs an admin sees follow the same rights the views enforce (billing/access.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from alerts.models import AlertChannel, AlertRule
from billing.models import Budget, SsoConfig, SsoDomain
from billing.usage.records import usage_record_batch

from ..support import KEY, make_key, usage_event

pytestmark = pytest.mark.django_db

# Every page of an account, by the tab that marks it active.
PAGES = {
    "dashboard": "dashboard", "keys": "key_list", "budgets": "budget_list", "providers": "provider_list",
    "alerts": "alert_settings", "team": "team", "settings": "account_settings", "audit": "audit_log",
}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    parent: Element | None = None
    children: list[Element] = field(default_factory=list)

    def iter(self, tag: str) -> list[Element]:
        found = [self] if self.tag == tag else []
        for child in self.children:
            found += child.iter(tag)
        return found

    def ancestors(self) -> list[Element]:
        up, node = [], self.parent
        while node is not None:
            up.append(node)
            node = node.parent
        return up


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = self.open = Element("#document", {})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), self.open)
        self.open.children.append(element)
        if tag not in VOID:
            self.open = element

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.open
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.open = node.parent


def parse(html: str) -> Element:
    builder = TreeBuilder()
    builder.feed(html)
    return builder.root


def table_problems(document: Element) -> list[str]:
    problems = []
    for number, table in enumerate(document.iter("table")):
        heads = [child for child in table.children if child.tag == "thead"]
        if not heads or not heads[0].iter("th"):
            problems.append(f"table {number}: no <thead> with column headers")
        for th in table.iter("th"):
            in_head = any(a.tag == "thead" for a in th.ancestors())
            wanted = "col" if in_head else "row"
            if th.attrs.get("scope") != wanted:
                problems.append(f"table {number}: a <th> {'in' if in_head else 'outside'} <thead> lacks scope={wanted}")
    return problems


@pytest.fixture
def furnished(acme, alice, plans) -> None:
    """acme with a row in every table: a key, a budget, a call, a channel, a rule, an SSO domain."""
    acme.plan = plans["enterprise"]
    acme.save(update_fields=["plan"])
    config = SsoConfig(account=acme, issuer="https://login.acme.test", client_id="tokonomics")
    config.set_client_secret("client secret")
    config.save()
    SsoDomain.objects.create(config=config, domain="acme.test")
    make_key(acme, KEY)
    Budget.objects.create(account=acme, scope="account", period="month", limit_usd=Decimal("10"), hard=True)
    usage_record_batch(events=[usage_event(acme.pk, 0, prefix="req_page", feature="search", tenant="globex",
                                           tags={"intent": "classify"})])
    AlertChannel.objects.create(account=acme, name="ops", kind="email", emails=["ops@acme.test"])
    AlertRule.objects.create(account=acme, scope="account", match="")


def _page(client: Client, tab: str) -> Element:
    response = client.get(reverse(PAGES[tab], args=["acme"]), {"last": "3650d"} if tab == "dashboard" else {})
    assert response.status_code == 200, (tab, response.status_code)
    return parse(response.content.decode())


@pytest.mark.parametrize("tab", PAGES)
def test_every_table_has_column_headers_and_the_active_tab_is_marked(
    client_as, alice, furnished, tab: str
) -> None:
    document = _page(client_as(alice), tab)
    assert document.iter("table"), f"{tab}: the fixture should put at least one table on the page"
    assert table_problems(document) == []
    current = [a for nav in document.iter("nav") for a in nav.iter("a") if "aria-current" in a.attrs]
    assert [(a.attrs["aria-current"], a.attrs["href"]) for a in current] == [
        ("page", reverse(PAGES[tab], args=["acme"]))]


def test_table_check_catches_a_table_without_headers() -> None:
    bare = parse("<table><tr><th>Name</th></tr><tr><th>x</th><td>1</td></tr></table>")
    assert len(table_problems(bare)) == 3
    good = parse('<table><thead><tr><th scope="col">Name</th></tr></thead>'
                 '<tbody><tr><th scope="row">x</th></tr></tbody></table>')
    assert table_problems(good) == []


def test_messages_are_announced_as_status(client_as, alice, acme) -> None:
    client = client_as(alice)
    budget = {"scope": "account", "match": "", "period": "month", "limit_usd": "10", "hard": "on", "alert_at": "50"}
    page = client.post(reverse("budget_create", args=["acme"]), budget, follow=True)
    document = parse(page.content.decode())
    lists = [ul for ul in document.iter("ul") if "messages" in (ul.attrs.get("class") or "").split()]
    assert lists, "saving a budget shows a message"
    for ul in lists:
        assert any(a.attrs.get("role") == "status" for a in ul.ancestors())


@pytest.mark.parametrize(("role", "sees_admin_tabs"), [("viewer", False), ("member", False), ("admin", True),
                                                       ("owner", True)])
def test_tabs_follow_the_rights_of_the_role(client_as, acme, role: str, sees_admin_tabs: bool) -> None:
    from ..support import user_with_seat

    person = user_with_seat(f"{role}-person@acme.test", acme, role)
    document = _page(client_as(person), "dashboard")
    hrefs = {a.attrs["href"] for nav in document.iter("nav") for a in nav.iter("a")}
    admin_tabs = {reverse("account_settings", args=["acme"]), reverse("audit_log", args=["acme"])}
    assert (admin_tabs <= hrefs) is sees_admin_tabs and (admin_tabs & hrefs == set()) is not sees_admin_tabs

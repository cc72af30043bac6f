"""Keys in the web app: create, rotate and revoke after a confirm step, post/redirect/get, the keys table's
columns in a fixed number of queries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import AuditEntry, Budget
from billing.usage.rollups import usage_rollup_add
from proxy.keys import hash_key
from proxy.models import ApiKey

from ..support import usage_record_create

pytestmark = pytest.mark.django_db


def _secret_on(page: str) -> str:
    return page.split('id="new-key-value">')[1].split("<")[0]


def test_get_on_the_new_key_address_is_the_keys_page_not_a_405(client_as, bob) -> None:
    response = client_as(bob).get(reverse("key_create", args=["acme"]))
    assert response.status_code == 302 and response["Location"] == reverse("key_list", args=["acme"])


def test_created_key_is_shown_once_after_the_redirect_and_a_refresh_does_not_show_it(client_as, bob, acme) -> None:
    client = client_as(bob)
    posted = client.post(reverse("key_create", args=["acme"]), {"name": "ci", "environment": "production"})
    assert posted.status_code == 302
    first = client.get(posted["Location"]).content.decode()
    secret = _secret_on(first)
    assert hash_key(secret) == ApiKey.objects.get(account=acme, name="ci").key_hash
    again = client.get(posted["Location"]).content.decode()
    assert secret not in again and 'id="new-key-value"' not in again
    assert ApiKey.objects.filter(account=acme).count() == 1


def test_revoke_asks_first_and_the_confirm_page_works_without_javascript(client_as, bob, acme) -> None:
    client = client_as(bob)
    client.post(reverse("key_create", args=["acme"]), {"name": "ci", "environment": "production"})
    key = ApiKey.objects.get(account=acme, name="ci")
    url = reverse("key_revoke", args=["acme", key.pk])
    confirm = client.get(url)
    page = confirm.content.decode()
    assert confirm.status_code == 200 and f'action="{url}"' in page and 'method="post"' in page
    key.refresh_from_db()
    assert key.revoked_at is None  # looking at the question changes nothing
    assert client.post(url).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_rotate_shows_the_new_secret_once_keeps_settings_and_audits(client_as, alice, acme) -> None:
    client = client_as(alice)
    client.post(reverse("key_create", args=["acme"]),
                {"name": "ci", "environment": "staging", "allowed_models": "gpt-4o-mini", "requests_per_minute": 7})
    old = _secret_on(client.get(reverse("key_list", args=["acme"])).content.decode())
    key = ApiKey.objects.get(account=acme, name="ci")
    url = reverse("key_rotate", args=["acme", key.pk])
    form = client.get(url).content.decode()
    assert 'name="grace"' in form and "7 days" in form
    posted = client.post(url, {"grace": "24h"})
    assert posted.status_code == 302
    page = client.get(posted["Location"]).content.decode()
    new = _secret_on(page)
    key.refresh_from_db()
    assert new != old and key.key_hash == hash_key(new) and key.previous_key_hash == hash_key(old)
    assert key.allowed_models == ["gpt-4o-mini"] and key.requests_per_minute == 7 and key.environment == "staging"
    assert "old secret valid until" in page
    hours = (key.previous_valid_until - datetime.now(UTC)).total_seconds() / 3600
    assert 23.9 < hours <= 24
    entry = AuditEntry.objects.get(account=acme, action="key.rotated")
    assert entry.actor == alice and old not in str(entry.after) and new not in str(entry.after)
    assert "previous_key_hash" not in entry.after and "key_hash" not in entry.after


def test_viewer_cannot_rotate_or_revoke_and_member_only_their_own(client_as, alice, bob, dave, acme) -> None:
    client_as(alice).post(reverse("key_create", args=["acme"]), {"name": "owners", "environment": "p"})
    key = ApiKey.objects.get(account=acme, name="owners")
    for user in (dave, bob):
        client = client_as(user)
        for name in ("key_rotate", "key_revoke", "key_edit"):
            assert client.get(reverse(name, args=["acme", key.pk])).status_code == 403
            assert client.post(reverse(name, args=["acme", key.pk]), {"grace": "none"}).status_code == 403
    created = client_as(dave).post(reverse("key_create", args=["acme"]), {"name": "x", "environment": "p"})
    assert created.status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None and key.previous_key_hash is None


def _keys_with_usage(acme, names: range) -> None:
    now = datetime.now(UTC)
    records = []
    for i in names:
        key = ApiKey.objects.create(account=acme, name=f"k{i}", key_hash=f"{i:064d}", prefix="mk_x")
        records.append(usage_record_create(
            request_id=f"req_{i}", account=acme, key=key, provider="openai", model="m", cost_usd=Decimal("1.5"),
            status_code=200, created_at=now))
    usage_rollup_add(records=records)


def test_keys_table_shows_created_last_used_spend_and_budget_in_a_fixed_number_of_queries(
        client_as, alice, acme) -> None:
    Budget.objects.create(account=acme, scope="key", match="*", period="month", limit_usd=Decimal("10"))
    client = client_as(alice)
    _keys_with_usage(acme, range(2))
    with CaptureQueriesContext(connection) as few:
        page = client.get(reverse("key_list", args=["acme"])).content.decode()
    row = page.split('<tr id="key-')[1]

    def cell(name: str) -> str:
        return row.split(f'class="{name}">')[1].split("</td>")[0]

    assert datetime.now(UTC).strftime("%Y-%m-%d ") in cell("last-used")
    assert cell("num month-spend") == "$1.50"
    assert "of $10.00 per month" in cell("key-budget")
    _keys_with_usage(acme, range(2, 12))
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("key_list", args=["acme"]))
    assert len(many) == len(few)


def test_edit_changes_settings_keeps_the_secret_and_renames_its_budget(client_as, alice, acme) -> None:
    client = client_as(alice)
    client.post(reverse("key_create", args=["acme"]), {"name": "ci", "environment": "production"})
    key = ApiKey.objects.get(account=acme, name="ci")
    budget = Budget.objects.create(account=acme, scope="key", match="ci", period="month", limit_usd=Decimal("5"))
    url = reverse("key_edit", args=["acme", key.pk])
    form = client.get(url).content.decode()
    assert 'value="ci"' in form and 'value="production"' in form
    saved = client.post(url, {"name": "ci-2", "environment": "staging", "allowed_models": "claude-*",
                              "max_concurrent": "3"})
    assert saved.status_code == 302
    old_hash = key.key_hash
    key.refresh_from_db()
    budget.refresh_from_db()
    assert (key.name, key.environment, key.allowed_models, key.max_concurrent) == ("ci-2", "staging", ["claude-*"], 3)
    assert key.key_hash == old_hash and budget.match == "ci-2"
    assert AuditEntry.objects.filter(action="key.updated", actor=alice, target="ci").exists()
    assert client_as(alice).get(url).status_code == 200


@pytest.mark.parametrize(("name", "args"), [
    ("key_edit", [1]), ("key_rotate", [1]), ("budget_update", [1]), ("provider_edit", [1]), ("provider_delete", [1]),
    ("provider_test", [1]), ("alert_channel_edit", [1]), ("alert_channel_delete", [1]), ("alert_channel_enable", [1]),
    ("alert_rule_edit", [1]), ("alert_rule_delete", [1]), ("alert_rule_enable", [1]), ("price_list", []),
    ("price_create", []), ("price_update", [1]), ("price_delete", [1]), ("token_list", []), ("token_create", []),
    ("token_revoke", [1]),
])
def test_outsiders_get_404_on_every_new_page_and_action(client_as, charlie, acme, name, args) -> None:
    client = client_as(charlie)
    assert client.post(reverse(name, args=["acme", *args]), {}).status_code in (404, 405)
    assert client.get(reverse(name, args=["acme", *args])).status_code in (404, 405)


def test_the_secret_waits_for_its_page_sealed_never_in_plaintext(client_as, bob, acme) -> None:
    from django.contrib.sessions.models import Session

    client = client_as(bob)
    posted = client.post(reverse("key_create", args=["acme"]), {"name": "ci", "environment": "production"})
    stored = " ".join(s.session_data + repr(s.get_decoded()) for s in Session.objects.all())
    assert "tk_shown_once" in stored  # it is there, waiting
    secret = _secret_on(client.get(posted["Location"]).content.decode())
    assert secret not in stored and secret[len("mk_"):] not in stored
    after = " ".join(repr(s.get_decoded()) for s in Session.objects.all())
    assert "tk_shown_once" not in after  # popped by the page that showed it

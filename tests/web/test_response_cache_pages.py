"""The response cache in the web app: the settings page says what turning it on stores, owners turn it on
(audited), the dashboard shows what it saved beside the spend, and the call log and a call's page say
"cache hit"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Account, AuditEntry, UsageRecord, UsageSummaryRollup
from billing.usage.records import usage_record_batch

from ..support import usage_event

pytestmark = pytest.mark.django_db

CACHE = {"cache_enabled": "on", "cache_ttl_seconds": "600", "cache_max_entry_bytes": "65536",
         "cache_max_total_bytes": "10485760"}


def test_the_settings_page_says_what_the_cache_stores(client_as, alice) -> None:
    page = client_as(alice).get("/a/acme/settings/").content.decode()
    section = page.split('id="response-cache"')[1].split("</form>")[0]
    for words in ("Off by default", "the provider&#x27;s answer bytes", "never the request itself",
                  "encrypted with a key derived for this account", "now 3600 seconds", "never served to another"):
        assert words.replace("&#x27;", "'") in section or words in section, words
    assert 'name="cache_enabled"' in section and "checked" not in section.split('name="cache_enabled"')[1][:40]


def test_an_owner_turns_the_cache_on_and_the_change_is_audited(client_as, alice, htmx) -> None:
    response = client_as(alice).post("/a/acme/settings/cache", CACHE, **htmx)
    assert response.status_code == 204
    acme = Account.objects.get(slug="acme")
    assert (acme.cache_enabled, acme.cache_ttl_seconds, acme.cache_max_entry_bytes, acme.cache_max_total_bytes,
            acme.cache_nonzero_temperature) == (True, 600, 65536, 10485760, False)
    entry = AuditEntry.objects.get(action="account.cache_changed")
    assert entry.actor == alice
    assert entry.before == {"cache_enabled": False, "cache_ttl_seconds": 3600, "cache_max_entry_bytes": 1048576,
                            "cache_max_total_bytes": 67108864}
    assert entry.after["cache_enabled"] is True


def test_a_member_cannot_turn_the_cache_on_and_bad_values_are_refused(client_as, alice, bob, htmx) -> None:
    assert client_as(bob).post("/a/acme/settings/cache", CACHE).status_code == 403
    response = client_as(alice).post("/a/acme/settings/cache", {**CACHE, "cache_ttl_seconds": "0"}, **htmx)
    assert response.status_code == 200 and response.content.decode().lstrip().startswith('<form id="cache-form"')
    assert not Account.objects.get(slug="acme").cache_enabled
    assert not AuditEntry.objects.filter(action="account.cache_changed").exists()


def _events(account) -> list[dict]:
    at = (datetime.now(UTC) - timedelta(minutes=5)).timestamp()
    miss = usage_event(account.pk, 1, prefix="req_cache", cost_usd="0.0125", created_at=at, input_tokens=100,
                       output_tokens=50)
    hit = usage_event(account.pk, 2, prefix="req_cache", cost_usd="0", cache_hit=True, cache_saved_usd="0.0125",
                      created_at=at, input_tokens=0, output_tokens=0)
    return [miss, hit]


def test_the_dashboard_shows_spent_and_cache_saved(client_as, alice, acme) -> None:
    usage_record_batch(events=_events(acme))
    row = UsageSummaryRollup.objects.get(account=acme)
    assert (row.requests, row.cache_hits, row.cache_saved_usd, row.cost_usd) == (
        2, 1, Decimal("0.0125"), Decimal("0.0125"))
    body = client_as(alice).get(reverse("dashboard", args=["acme"]), {"last": "1d"}).content.decode()
    card = " ".join(body.split('data-testid="savings"')[1][:700].split())
    assert '<div class="stat">$0.01</div>' in card and "spent $0.01 · cache saved $0.01 (1 hit; " in card
    assert "#response-cache\">cache off</a>)" in card  # the cache was turned off since: the card says so
    acme.cache_enabled = True
    acme.save()
    body = client_as(alice).get(reverse("dashboard", args=["acme"]), {"last": "1d"}).content.decode()
    assert "spent $0.01 · cache saved $0.01 (1 hit)" in " ".join(body.split())


def test_the_savings_card_adds_routings_saving_to_the_caches(client_as, alice, acme) -> None:
    miss, hit = _events(acme)
    usage_record_batch(events=[{**miss, "route": "support-default", "requested_model": "gpt-4o",
                                "routing_saved_usd": "1.25"}, hit])
    body = client_as(alice).get(reverse("dashboard", args=["acme"]), {"last": "1d"}).content.decode()
    card = " ".join(body.split('data-testid="savings"')[1][:1200].split())
    assert '<div class="stat">$1.26</div>' in card  # $1.25 routing + $0.0125 cache
    assert "cache saved $0.01 (1 hit" in card and "routing saved $1.25" in card


def test_the_call_log_and_the_calls_page_say_cache_hit(client_as, alice, acme) -> None:
    usage_record_batch(events=_events(acme))
    hit = UsageRecord.objects.get(cache_hit=True)
    assert hit.cache_saved_usd == Decimal("0.0125") and hit.cost_usd == 0
    log = client_as(alice).get(reverse("call_list", args=["acme"]), {"last": "24h"}).content.decode()
    assert log.count(">cache hit</span>") == 1
    detail = client_as(alice).get(reverse("call_detail", args=["acme", hit.pk])).content.decode()
    assert "cache hit: answered from the account&#x27;s cache" in detail or "cache hit: answered" in detail
    assert "saved $0.012500000" in detail


def test_the_csv_of_calls_and_the_api_carry_the_cache_fields(client_as, alice, acme) -> None:
    usage_record_batch(events=_events(acme))
    response = client_as(alice).get(reverse("call_export", args=["acme", "csv"]), {"last": "24h"})
    csv_text = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    header, *rows = csv_text.strip().splitlines()
    assert header.endswith("cache_hit,cache_saved_usd")
    assert sorted(row.rsplit(",", 2)[1:] for row in rows) == [["False", ""], ["True", "0.0125"]]

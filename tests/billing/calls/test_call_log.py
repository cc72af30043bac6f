"""The call log: keyset pages, every filter and the search, account scoping, and exports of what is filtered."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from billing.calls.selectors import CallFilters, Cursor, call_list
from billing.models import UsageRecord
from billing.usage.records import usage_record_batch

from ...support import make_key, usage_event

pytestmark = pytest.mark.django_db
NOW = datetime.now(UTC).replace(microsecond=0)


def _calls(account, *specs: dict, prefix: str = "req_log") -> list[UsageRecord]:
    """Store a call per spec (fields of its usage event), an hour ago unless a spec says when."""
    events = [usage_event(account.pk, n, prefix=f"{prefix}_{account.slug}", **{
        "created_at": (NOW - timedelta(hours=1)).timestamp(), **spec}) for n, spec in enumerate(specs)]
    usage_record_batch(events=events)
    return list(UsageRecord.objects.filter(request_id__in=[e["request_id"] for e in events]))


def _page_ids(client, url: str, params: dict) -> list[list[str]]:
    """The request ids of every page, following the "Older calls" links."""
    pages, query = [], dict(params)
    while True:
        response = client.get(url, query)
        assert response.status_code == 200
        body = response.content.decode()
        pages.append([line.split("<code>")[1].split("</code>")[0]
                      for line in body.splitlines() if "/calls/" in line and "<code>" in line])
        if 'rel="next"' not in body:
            return pages
        after = body.split('rel="next"')[0].rsplit("after=", 1)[1].split('"')[0].split("&")[0]
        query = {**params, "after": after}


def test_pages_walk_every_call_once_across_equal_timestamps(acme) -> None:
    same = (NOW - timedelta(minutes=5)).timestamp()
    _calls(acme, *[{"created_at": same} for _ in range(7)], *[{"created_at": same - n} for n in range(1, 6)])
    seen, after = [], None
    while True:
        page = call_list(account=acme, filters=CallFilters(), after=after, limit=3)
        seen += page.calls
        if page.next is None:
            break
        after = page.next
    assert len(seen) == 12 and len({c.pk for c in seen}) == 12
    assert [(c.created_at, c.pk) for c in seen] == sorted(((c.created_at, c.pk) for c in seen), reverse=True)


def test_the_page_links_to_older_calls_by_cursor_and_never_repeats_one(client, alice, acme) -> None:
    same = (NOW - timedelta(minutes=5)).timestamp()
    _calls(acme, *[{"created_at": same} for _ in range(60)], *[{"created_at": same - 1} for _ in range(45)])
    client.force_login(alice)
    pages = _page_ids(client, reverse("call_list", args=["acme"]), {})
    assert [len(p) for p in pages] == [50, 50, 5]
    assert len({rid for page in pages for rid in page}) == 105


def test_cursor_round_trips_and_refuses_garbage() -> None:
    cursor = Cursor(datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=UTC), 42)
    assert Cursor.decode(cursor.encode()) == cursor


@pytest.mark.parametrize("after", ["abc", "1-", "-1", "99999999999999999999-1", "1-2-3", "１-1"])
def test_a_bad_cursor_is_a_400(client, alice, acme, after) -> None:
    client.force_login(alice)
    assert client.get(reverse("call_list", args=["acme"]), {"after": after}).status_code == 400


@pytest.fixture
def mixed(acme):
    """Calls that differ in one attribute each from the plain one (feature support-bot, tenant globex …)."""
    backend = make_key(acme, "tk-backend-0000000000000000", name="backend")
    batch = make_key(acme, "tk-batch-00000000000000000000", name="batch")
    make_key(acme, "tk-idle-000000000000000000000", name="idle")
    plain = {"feature": "support-bot", "tenant": "globex", "environment": "production", "model": "gpt-4o-mini",
             "provider": "openai", "key_id": backend.pk}
    return _calls(acme, plain,
                  {**plain, "feature": "search"},
                  {**plain, "tenant": "initech"},
                  {**plain, "environment": "staging"},
                  {**plain, "model": "gpt-4o", "served_model": "gpt-4o-2024-08-06"},
                  {**plain, "provider": "anthropic", "model": "claude-haiku-4-5"},
                  {**plain, "key_id": batch.pk},
                  {**plain, "status_code": 429, "denied_scope": "tenant_budget", "cost_usd": "0",
                   "input_tokens": 0, "output_tokens": 0},
                  {**plain, "status_code": 502, "cost_usd": None, "input_tokens": 0, "output_tokens": 0},
                  {**plain, "created_at": (NOW - timedelta(days=3)).timestamp()})


@pytest.mark.parametrize(("params", "expected"), [
    ({}, 10),
    ({"feature": "search"}, 1),
    ({"feature": "support-bot"}, 9),
    ({"tenant": "initech"}, 1),
    ({"environment": "staging"}, 1),
    ({"model": "gpt-4o"}, 1),
    ({"provider": "anthropic"}, 1),
    ({"key": "batch"}, 1),
    ({"key": "backend"}, 9),
    ({"key": "no-such-key"}, 0),
    ({"key": "idle"}, 0),  # a key without calls
    ({"key": "batch", "last": "7d"}, 1),
    ({"status": "ok"}, 8),
    ({"status": "denied"}, 1),
    ({"status": "error"}, 1),
    ({"last": "24h"}, 9),
    ({"last": "7d"}, 10),
    ({"since": str((NOW - timedelta(days=3)).date()), "until": str((NOW - timedelta(days=3)).date())}, 1),
    ({"q": "req_log_acme_4"}, 1),  # a request id, exactly
    ({"q": "sup"}, 9),  # the start of a feature
    ({"q": "init"}, 1),  # … of a tenant
    ({"q": "claude"}, 1),  # … of a model
    ({"q": "ech"}, 0),  # not the start of anything
    ({"feature": "support-bot", "status": "ok", "last": "24h"}, 6),
])
def test_each_filter_narrows_the_log(client, alice, acme, mixed, params, expected) -> None:
    client.force_login(alice)
    pages = _page_ids(client, reverse("call_list", args=["acme"]), params)
    assert sum(len(p) for p in pages) == expected
    exported = client.get(reverse("call_export", args=["acme", "jsonl"]), params)
    assert len(b"".join(exported.streaming_content).splitlines()) == expected


def test_dates_are_days_of_the_account_time_zone(client, alice, acme) -> None:
    acme.timezone = "Pacific/Auckland"  # UTC+13 in December
    acme.save(update_fields=["timezone"])
    _calls(acme, {"created_at": datetime(2026, 12, 1, 10, 30, tzinfo=UTC).timestamp()})  # Dec 1 23:30 there
    _calls(acme, {"created_at": datetime(2026, 12, 1, 11, 30, tzinfo=UTC).timestamp()}, prefix="late")  # Dec 2
    client.force_login(alice)
    url = reverse("call_list", args=["acme"])
    body = client.get(url, {"since": "2026-12-01", "until": "2026-12-01"}).content.decode()
    assert "req_log_acme_0" in body and "late_acme_0" not in body
    assert "2026-12-01 23:30:00" in body and "Time (Pacific/Auckland)" in body


@pytest.mark.parametrize("params", [{"status": "weird"}, {"last": "5y"}, {"since": "yesterday"},
                                    {"until": "9999-12-31"}, {"feature": "x" * 201}, {"q": "y" * 201}])
def test_a_bad_filter_is_a_400_that_says_why(client, alice, acme, params) -> None:
    client.force_login(alice)
    response = client.get(reverse("call_list", args=["acme"]), params)
    assert response.status_code == 400 and response.content


def test_another_accounts_calls_never_appear(client, alice, acme, globex, charlie) -> None:
    ours = _calls(acme, {"feature": "support-bot"})
    theirs = _calls(globex, {"feature": "support-bot"}, {"feature": "support-bot", "status_code": 429,
                                                            "denied_scope": "key_budget"})
    client.force_login(alice)
    pages = _page_ids(client, reverse("call_list", args=["acme"]), {"q": "req_log_globex_0"})
    assert pages == [[]]
    for kind in ("csv", "jsonl"):
        body = b"".join(client.get(reverse("call_export", args=["acme", kind])).streaming_content).decode()
        assert ours[0].request_id in body and "globex" not in body.replace("\"tenant\": \"globex\"", "")
    assert client.get(reverse("call_detail", args=["acme", theirs[0].pk])).status_code == 404
    assert client.get(reverse("call_detail", args=["globex", theirs[0].pk])).status_code == 404  # alice: no seat
    client.force_login(charlie)
    assert client.get(reverse("call_list", args=["acme"])).status_code == 404
    assert client.get(reverse("call_detail", args=["acme", ours[0].pk])).status_code == 404
    assert client.get(reverse("call_export", args=["acme", "csv"])).status_code == 404
    assert client.get(reverse("call_detail", args=["globex", theirs[0].pk])).status_code == 200


def test_detail_shows_every_metadatum_and_says_there_is_no_content(client, alice, acme, mixed) -> None:
    served = next(c for c in mixed if c.served_model == "gpt-4o-2024-08-06")
    denied = next(c for c in mixed if c.denied_scope)
    client.force_login(alice)
    body = client.get(reverse("call_detail", args=["acme", served.pk])).content.decode()
    assert served.request_id in body and "gpt-4o-2024-08-06" in body and "backend" in body
    assert "never stores content" in body
    body = client.get(reverse("call_detail", args=["acme", denied.pk])).content.decode()
    assert "denied · tenant" in body and "nothing spent" in body  # the scope, in words or as stored


def test_exports_hold_exactly_the_filtered_calls_with_plain_decimals(client, alice, acme, mixed) -> None:
    _calls(acme, {"feature": "=HYPERLINK(\"http://evil\")", "cost_usd": "0.000000120"},
           {"feature": "zero", "cost_usd": "0E-9"}, prefix="odd")
    client.force_login(alice)
    params = {"feature": "support-bot", "status": "ok", "last": "24h"}
    listed = [rid for page in _page_ids(client, reverse("call_list", args=["acme"]), params) for rid in page]

    response = client.get(reverse("call_export", args=["acme", "csv"]), params)
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == (
        'attachment; filename="acme-calls-last-24h-feature-support-bot-status-ok.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["request_id"] for row in rows] == listed
    assert {row["feature"] for row in rows} == {"support-bot"} and {row["status_code"] for row in rows} == {"200"}

    lines = b"".join(client.get(reverse("call_export", args=["acme", "jsonl"]), params).streaming_content)
    assert [json.loads(line)["request_id"] for line in lines.splitlines()] == listed

    odd = b"".join(client.get(reverse("call_export", args=["acme", "csv"]), {"q": "odd_acme_0"})
                   .streaming_content).decode()
    row = next(csv.DictReader(io.StringIO(odd)))
    assert row["feature"].startswith("'=") and row["cost_usd"] == "0.00000012"
    zero = b"".join(client.get(reverse("call_export", args=["acme", "jsonl"]), {"q": "odd_acme_1"})
                    .streaming_content)
    assert json.loads(zero)["cost_usd"] == "0" and b"E-" not in zero


def test_the_log_is_in_the_navigation_and_says_when_nothing_matches(client, alice, acme) -> None:
    client.force_login(alice)
    body = client.get(reverse("dashboard", args=["acme"])).content.decode()
    assert f'href="{reverse("call_list", args=["acme"])}"' in body
    body = client.get(reverse("call_list", args=["acme"])).content.decode()
    assert "No calls yet" in body
    body = client.get(reverse("call_list", args=["acme"]), {"feature": "nothing"}).content.decode()
    assert "No calls match these filters" in body


def test_the_forms_empty_fields_are_dropped_from_the_address(client, alice, acme) -> None:
    client.force_login(alice)
    response = client.get(reverse("call_list", args=["acme"]), {"q": "", "feature": "search", "tenant": ""})
    assert response.status_code == 302 and response["Location"] == "/a/acme/calls/?feature=search"


def test_a_keys_calls_page_from_its_newest(client, alice, acme) -> None:
    old = make_key(acme, "tk-old-0000000000000000000000", name="old", revoked_at=NOW - timedelta(days=30))
    long_ago = (NOW - timedelta(days=40)).timestamp()
    _calls(acme, *[{"key_id": old.pk, "created_at": long_ago - n % 3} for n in range(55)],
           *[{"created_at": NOW.timestamp() - n} for n in range(5)])
    client.force_login(alice)
    pages = _page_ids(client, reverse("call_list", args=["acme"]), {"key": "old"})
    assert [len(p) for p in pages] == [50, 5] and len({rid for p in pages for rid in p}) == 55


@pytest.mark.parametrize(("value", "plain"), [("0.000000120", "0.00000012"), ("1.20E-7", "0.00000012"),
                                              ("0E-9", "0"), ("12.500000000", "12.5"), ("1E+2", "100")])
def test_decimals_are_written_plain(value, plain) -> None:
    from decimal import Decimal

    from tokonomics.csv_cells import decimal_text

    assert decimal_text(Decimal(value)) == plain


def test_the_export_name_carries_the_filter_and_nothing_a_header_would_break_on(client, alice, acme) -> None:
    client.force_login(alice)
    response = client.get(reverse("call_export", args=["acme", "csv"]),
                          {"tenant": 'a"b\r\nc/../d', "since": "2026-12-01", "q": "x y"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="acme-calls-since-2026-12-01-tenant-a_b_c_.._d-search-x_y.csv"')


def test_an_export_reads_every_call_once_in_keyset_chunks(acme) -> None:
    from billing.calls.selectors import call_chunks

    same = (NOW - timedelta(minutes=5)).timestamp()
    _calls(acme, *[{"created_at": same} for _ in range(5)], {"created_at": same - 1}, {"created_at": same + 1})
    chunks = list(call_chunks(account=acme, filters=CallFilters(), size=3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    flat = [call.pk for chunk in chunks for call in chunk]
    assert flat == [call.pk for call in call_list(account=acme, filters=CallFilters(), limit=10).calls]


def test_guardrail_hits_show_in_the_log_and_the_detail_by_rule_id(client, alice, acme) -> None:
    hits = [{"rule": "pii-email", "action": "mask", "count": 2}, {"rule": "no-project-x", "action": "block",
                                                                  "count": 1}]
    stored = _calls(acme, {"guardrail_hits": hits}, {}, prefix="req_guard")
    masked, plain = sorted(stored, key=lambda c: not c.guardrail_hits)
    client.force_login(alice)
    log = client.get(reverse("call_list", args=["acme"])).content.decode()
    assert "pii-email · mask ×2" in log and "no-project-x · block" in log
    detail = client.get(reverse("call_detail", args=["acme", masked.pk])).content.decode()
    assert "pii-email · mask ×2" in detail and "never kept" in detail
    assert "nothing matched" in client.get(reverse("call_detail", args=["acme", plain.pk])).content.decode()

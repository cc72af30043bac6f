"""Issue 15 §1: the dashboard's numbers are right — dates that stay put, filters every card honours, the
account's time zone, denials apart from unpriced calls, keys by name, ranges that keep filters, one
precision per column and CSV decimals as people write them."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from billing.dashboard.selectors import range_parse
from billing.usage.records import usage_record_batch

from ..support import make_key, usage_event

pytestmark = pytest.mark.django_db


def _event(account, n: int, **fields) -> dict:
    return usage_event(account.pk, n, prefix="req_num", **{
        "feature": "support-bot", "tenant": "globex", "tags": {"intent": "summarize"}, "input_tokens": 1000,
        "output_tokens": 500, "cost_usd": "0.001", "latency_ms": 100,
        "created_at": (datetime.now(UTC) - timedelta(minutes=5)).timestamp(), **fields})


def _page(client, user, account, **params) -> str:
    client.force_login(user)
    response = client.get(reverse("dashboard", args=[account.slug]), params)
    assert response.status_code == 200
    return response.content.decode()


def _card(body: str, dimension: str) -> str:
    return body.split(f'id="breakdown-{dimension}"')[1].split("</table>")[0]


def test_to_date_stays_the_day_asked_for_after_apply(client, alice, acme) -> None:
    body = _page(client, alice, acme, since="2026-12-01", until="2026-12-03")
    assert 'name="until" value="2026-12-03"' in body
    assert 'name="since" value="2026-12-01"' in body


def test_tag_card_and_csv_honour_the_filters_and_fill_tokens(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, n) for n in range(2)]
                       + [_event(acme, 10 + n, tenant="initech") for n in range(3)])
    body = _page(client, alice, acme, tenant="globex", last="1d")
    assert re.search(r"intent=summarize</th>\s*<td class=\"num\">2</td>", _card(body, "tag"))
    csv_rows = list(csv.reader(io.StringIO(client.get(
        reverse("breakdown_csv", args=["acme", "tag"]), {"tenant": "globex", "last": "1d"}).content.decode())))
    assert csv_rows[1] == ["intent=summarize", "2", "3000", "0.002"]


def test_times_are_the_accounts_and_labelled(client, alice, acme) -> None:
    acme.timezone = "Europe/Berlin"
    acme.save(update_fields=["timezone"])
    # 23:30 UTC on Dec 2 is 00:30 on Dec 3 in Berlin: inside a range of Dec 3, shown at 00:30:00.
    at = datetime(2026, 12, 2, 23, 30, tzinfo=UTC).timestamp()
    usage_record_batch(events=[_event(acme, 1, created_at=at)])
    body = _page(client, alice, acme, since="2026-12-03", until="2026-12-03")
    assert "Times in Europe/Berlin" in body
    recent = body.split("Recent calls")[1]
    assert "00:30:00" in recent and "23:30:00" not in recent
    assert ">1 call " in body or ">1</span> call" in body or "1 call ·" in body
    # the chart's buckets and ends are Berlin's too
    assert 'title="2026-12-03 00:00:' in body


def test_denied_calls_say_denied_and_stay_out_of_per_call_figures(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, n) for n in range(2)]
                       + [_event(acme, 10 + n, status_code=429, denied_scope="tenant_budget", cost_usd=None,
                                 latency_ms=2) for n in range(2)])
    body = _page(client, alice, acme, last="1d")
    recent = body.split("Recent calls")[1]
    assert "unpriced" not in recent and recent.count("denied") >= 2
    assert "$0.001000 per call" in body  # 0.002 over the 2 calls that ran, not over 4
    assert "avg latency 100 ms" in body


def test_key_filter_by_name_scoped_to_the_account(client, alice, acme, globex) -> None:
    mine = make_key(acme, "mk_numbers_mine_000000000000", name="prod-bot")
    theirs = make_key(globex, "mk_numbers_theirs_0000000000", name="other-bot")
    usage_record_batch(events=[_event(acme, 1, key_id=mine.pk, feature="mine"),
                               _event(acme, 2, feature="keyless")])
    body = _page(client, alice, acme, key="prod-bot", last="1d")
    assert "key = prod-bot" in body and f"key = {mine.pk}" not in body
    assert "1 call ·" in body and "keyless" not in body.split("Recent calls")[1]
    unknown = _page(client, alice, acme, key="other-bot", last="1d")
    assert "No key named" in unknown and "other-bot" in unknown
    assert theirs.pk  # the other account's key is never matched by name
    # the key card links by name
    assert "key=prod-bot" in _card(_page(client, alice, acme, last="1d"), "key")


def test_range_buttons_keep_filters_and_offer_today_and_month_to_date(client, alice, acme) -> None:
    body = _page(client, alice, acme, feature="search", last="30d")
    toolbar = body.split('class="toolbar"')[1].split("</form>")[0]
    for last in ("24h", "7d", "30d", "today", "mtd"):
        assert re.search(rf'href="\?feature=search&amp;last={last}"', toolbar), last
    assert "Today" in toolbar and "Month to date" in toolbar


def test_today_and_month_to_date_start_at_the_accounts_midnight(client, alice, acme) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 12, 15, 10, 0, tzinfo=UTC)
    today = range_parse({"last": "today"}, now=now, tz=berlin)
    assert today.since == datetime(2026, 12, 15, tzinfo=berlin) and today.until == now
    mtd = range_parse({"last": "mtd"}, now=now, tz=berlin)
    assert mtd.since == datetime(2026, 12, 1, tzinfo=berlin)


def test_vs_previous_period_compares_the_totals(client, alice, acme) -> None:
    now = datetime.now(UTC)
    usage_record_batch(events=[_event(acme, 1, created_at=(now - timedelta(hours=1)).timestamp()),
                               _event(acme, 2, created_at=(now - timedelta(hours=30)).timestamp(),
                                      cost_usd="0.004")])
    body = _page(client, alice, acme, last="1d", compare="previous")
    assert "vs previous period" in body
    assert "−75%" in body or "-75%" in body  # $0.001 against $0.004
    assert 'href="?last=1d"' in body  # and a way back


def test_thousands_separators_and_no_latency_on_an_empty_range(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, n, input_tokens=1_234_000) for n in range(2)])
    body = _page(client, alice, acme, last="1d")
    assert "2,469,000" in body  # (1,234,000 + 500) × 2
    empty = _page(client, alice, acme, since="2020-01-01", until="2020-01-02")
    assert "avg latency 0 ms" not in empty and "No calls in this range" in empty


def test_an_empty_filter_says_no_calls_match(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, 1)])
    body = _page(client, alice, acme, feature="nothing-like-this", last="1d")
    assert "No calls match" in body and "No calls yet" not in body


def test_csv_decimals_plain_and_filenames_name_the_filter(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, 1, cost_usd="0.00000128"), _event(acme, 2, cost_usd="0.000000120")])
    client.force_login(alice)
    response = client.get(reverse("breakdown_csv", args=["acme", "model"]), {"tenant": "globex", "last": "7d"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[1][3] == "0.0000014"
    assert "tenant-globex" in response["Content-Disposition"]


def test_alerts_page_times_are_the_accounts_and_labelled(client, alice, acme) -> None:
    from alerts.models import AlertEvent

    acme.timezone = "Europe/Berlin"
    acme.save(update_fields=["timezone"])
    event = AlertEvent.objects.create(account=acme, type="test", dedupe_key="i15-tz", webhook_id="msg_i15tz",
                                      payload={})
    AlertEvent.objects.filter(pk=event.pk).update(created_at=datetime(2026, 12, 2, 23, 30, tzinfo=UTC))
    client.force_login(alice)
    body = client.get(reverse("alert_settings", args=["acme"])).content.decode()
    assert "2026-12-03 00:30:00" in body and "When (Europe/Berlin)" in body


def test_unpriced_in_the_list_agrees_with_the_card(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, 1, cost_usd=None), _event(acme, 2, status_code=502, cost_usd=None),
                               _event(acme, 3, status_code=429, denied_scope="plan", cost_usd=None)])
    body = _page(client, alice, acme, last="1d")
    assert "1 · 1 · 1</div>" in body  # denied · errors · unpriced
    assert body.split("Recent calls")[1].count("unpriced") == 1


def test_tags_of_too_many_filtered_calls_say_so_instead_of_a_slow_page(client, alice, acme, monkeypatch) -> None:
    from billing.dashboard import selectors

    usage_record_batch(events=[_event(acme, n) for n in range(3)])
    monkeypatch.setattr(selectors, "TAG_CALLS_ON_PAGE", 2)
    monkeypatch.setattr(selectors, "TAG_CALLS_IN_CSV", 2)
    body = _page(client, alice, acme, tenant="globex", last="1d")
    assert "Too many calls match these filters" in _card(body, "tag")
    response = client.get(reverse("breakdown_csv", args=["acme", "tag"]), {"tenant": "globex", "last": "1d"})
    assert response.status_code == 413
    assert "intent=summarize" in _card(_page(client, alice, acme, last="1d"), "tag")  # unfiltered: the rollup

"""Dashboards: rollup-backed numbers, live polling that answers 204 when nothing changed, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Budget
from billing.usage.records import usage_record_batch

from ..support import ApiClient, token_for, usage_event

pytestmark = pytest.mark.django_db


def _event(account, n: int, **fields) -> dict:
    """A call of the support bot five minutes ago (recent enough for every dashboard window)."""
    return usage_event(account.pk, n, prefix="req_dash", **{
        "feature": "support-bot", "tenant": "globex", "environment": "production", "tags": {"intent": "summarize"},
        "input_tokens": 1000, "output_tokens": 500, "cached_input_tokens": 200, "cost_usd": "0.000435000",
        "latency_ms": 120, "created_at": (datetime.now(UTC) - timedelta(minutes=5)).timestamp(), **fields})


def test_dashboard_shows_spend_breakdowns_and_recent_calls(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, n) for n in range(4)] + [_event(acme, 9, feature="search",
                                                                            cost_usd="0.01")])
    Budget.objects.create(account=acme, scope="account", period="month", limit_usd=Decimal("1"), hard=True)
    client.force_login(alice)
    page = client.get(reverse("dashboard", args=["acme"]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "$0.011740" in body  # 4 × 0.000435 + 0.01
    assert "support-bot" in body and "search" in body and "intent=summarize" in body
    assert 'id="dashboard-live"' in body and 'hx-trigger="every 2s"' in body
    drilled = client.get(reverse("dashboard", args=["acme"]), {"feature": "search", "last": "1d"})
    assert "$0.010000" in drilled.content.decode()


def test_live_partial_answers_204_until_new_usage_arrives(client, alice, acme) -> None:
    client.force_login(alice)
    url = reverse("dashboard", args=["acme"])
    first = client.get(url, headers={"HX-Request": "true"})
    assert first.status_code == 200
    token = first.content.decode().split("token=")[1].split('"')[0]
    assert client.get(url, {"token": token}, headers={"HX-Request": "true"}).status_code == 204
    usage_record_batch(events=[_event(acme, 1)])
    fresh = client.get(url, {"token": token}, headers={"HX-Request": "true"})
    assert fresh.status_code == 200 and "<html" not in fresh.content.decode()
    assert "$0.000435" in fresh.content.decode()


def test_breakdown_csv(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, 1), _event(acme, 2, tenant="initech")])
    client.force_login(alice)
    response = client.get(reverse("breakdown_csv", args=["acme", "tenant"]), {"last": "1d"})
    assert response["Content-Type"] == "text/csv"
    lines = response.content.decode().splitlines()
    assert lines[0] == "tenant,requests,tokens,cost_usd"
    assert {line.split(",")[0] for line in lines[1:]} == {"globex", "initech"}
    assert client.get(reverse("breakdown_csv", args=["acme", "nope"])).status_code == 404


def test_outsider_sees_nothing(client, charlie, acme) -> None:
    usage_record_batch(events=[_event(acme, 1)])
    client.force_login(charlie)
    for url in (reverse("dashboard", args=["acme"]), reverse("breakdown_csv", args=["acme", "feature"])):
        assert client.get(url).status_code == 404
    assert client.get(reverse("dashboard", args=["acme"]), headers={"HX-Request": "true"}).status_code == 404


def test_anonymous_is_sent_to_sign_in(client, acme) -> None:
    response = client.get(reverse("dashboard", args=["acme"]))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_breakdown_csv_writes_client_values_as_text_never_formulas(client, alice, acme) -> None:
    usage_record_batch(events=[_event(acme, 1, tenant="=HYPERLINK(\"http://evil.test\")"),
                               _event(acme, 2, tenant="@SUM(A1)", tags={"+x": "-y"})])
    client.force_login(alice)
    tenants = client.get(reverse("breakdown_csv", args=["acme", "tenant"]), {"last": "1d"}).content.decode()
    assert "'=HYPERLINK" in tenants and "'@SUM(A1)" in tenants
    assert not any(row[0][:1] in "=+-@" for row in csv.reader(io.StringIO(tenants)))
    tags = client.get(reverse("breakdown_csv", args=["acme", "tag"]), {"last": "1d"}).content.decode()
    assert "'+x=-y" in tags


@pytest.mark.parametrize("query", [{"last": "99999999d"}, {"last": "99999999999h"}, {"since": "9999-12-31"},
                                   {"until": "0001-01-01"}, {"since": "0001-01-01T00:00:00+14:00"}])
def test_out_of_range_dates_are_a_400_not_a_500(client, alice, acme, query) -> None:
    client.force_login(alice)
    for name, args in (("dashboard", ["acme"]), ("breakdown_csv", ["acme", "tenant"])):
        response = client.get(reverse(name, args=args), query)
        assert response.status_code == 400, (name, query)
        assert "range" in response.content.decode()


def test_longest_last_is_accepted(client, alice, acme) -> None:
    from billing.dashboard.selectors import MAX_RANGE_DAYS

    client.force_login(alice)
    assert client.get(reverse("dashboard", args=["acme"]), {"last": f"{MAX_RANGE_DAYS}d"}).status_code == 200
    assert client.get(reverse("dashboard", args=["acme"]), {"last": f"{MAX_RANGE_DAYS + 1}d"}).status_code == 400


@pytest.mark.parametrize("key", ["²", "99999999999999999999999", "-1", "abc"])
def test_odd_key_filters_match_nothing(client, alice, acme, key) -> None:
    usage_record_batch(events=[_event(acme, 1)])
    client.force_login(alice)
    response = client.get(reverse("dashboard", args=["acme"]), {"key": key})
    assert response.status_code == 200
    assert "0 calls" in response.content.decode()  # and no "per call" of nothing (issue 15)


def test_mid_hour_range_gives_the_same_totals_in_dashboard_csv_and_api(client, alice, acme) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    minutes = {"before": 10, "first-edge": 40, "whole-hour": 90, "last-edge": 130, "after": 170}
    usage_record_batch(events=[_event(acme, n, feature=name, created_at=(start + timedelta(minutes=m)).timestamp())
                               for n, (name, m) in enumerate(minutes.items())])
    since, until = start + timedelta(minutes=30), start + timedelta(minutes=150)
    query = {"since": since.isoformat(), "until": until.isoformat()}
    client.force_login(alice)
    rows = list(csv.DictReader(io.StringIO(
        client.get(reverse("breakdown_csv", args=["acme", "feature"]), query).content.decode())))
    dashboard = {row["feature"]: (int(row["requests"]), Decimal(row["cost_usd"])) for row in rows}
    page = client.get(reverse("dashboard", args=["acme"]), query).content.decode()
    api = ApiClient(token_for(acme)).get("usage/aggregates", group_by="feature", **query).json()
    assert {g["group"]: (g["requests"], Decimal(g["cost_usd"])) for g in api["groups"]} == dashboard
    assert set(dashboard) == {"first-edge", "whole-hour", "last-edge"}
    assert api["total"]["requests"] == 3 and "3 calls ·" in page

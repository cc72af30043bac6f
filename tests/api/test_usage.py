"""Usage over the API: records page by page with filters, aggregates per dimension or period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.usage.exports import EXPORT_FIELDS

from ..support import ApiClient
from .conftest import usage_record

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def records(acme, acme_key):
    """Five calls over five hours: two features, one unknown price, one denial, one other key (none)."""
    return [
        usage_record(acme, "r1", T0, key=acme_key, feature="support-bot", tenant="initech", cost_usd=Decimal("0.5"),
                     input_tokens=1000, output_tokens=200, cached_input_tokens=400, reasoning_tokens=50),
        usage_record(acme, "r2", T0 + timedelta(hours=1), key=acme_key, feature="support-bot", tenant="umbrella",
                     cost_usd=Decimal("0.25"), cache_write_tokens=300, environment="staging"),
        usage_record(acme, "r3", T0 + timedelta(hours=2), key=acme_key, feature="summarize", model="my-finetune",
                     provider="vllm-internal", cost_usd=None, tags={"intent": "summarize"}),
        usage_record(acme, "r4", T0 + timedelta(hours=3), key=acme_key, feature="summarize", status_code=429,
                     denied_scope="feature_budget", input_tokens=0, output_tokens=0, cost_usd=Decimal(0)),
        usage_record(acme, "r5", T0 + timedelta(hours=4), feature="", cost_usd=Decimal("1.000000001")),
    ]


def _ids(response) -> list[str]:
    return [r["request_id"] for r in response.json()["items"]]


def test_records_come_newest_first_with_the_contract_fields(acme_api: ApiClient, records) -> None:
    response = acme_api.get("usage/records")
    assert response.status_code == 200
    assert _ids(response) == ["r5", "r4", "r3", "r2", "r1"]
    first = response.json()["items"][-1]
    assert set(EXPORT_FIELDS) - {"account"} <= set(first)
    assert first["key"] == "ci" and first["key_id"] == records[0].key_id
    assert first["cost_usd"] == "0.500000000" and first["cached_input_tokens"] == 400
    assert response.json()["items"][2]["cost_usd"] is None
    assert response.json()["items"][2]["tags"] == {"intent": "summarize"}
    content_words = {"prompt", "messages", "content", "completion", "response", "body"}
    assert not content_words & set(first)


def test_records_page_with_a_cursor(acme_api: ApiClient, records) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        page = acme_api.get("usage/records", limit=2, **({"cursor": cursor} if cursor else {}))
        seen += _ids(page)
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ["r5", "r4", "r3", "r2", "r1"]
    assert cursor is None


def test_records_filters(acme_api: ApiClient, records, acme_key) -> None:
    def ids(**query: object) -> list[str]:
        response = acme_api.get("usage/records", **query)
        assert response.status_code == 200, response.content
        return _ids(response)

    assert ids(feature="support-bot") == ["r2", "r1"]
    assert ids(tenant="umbrella") == ["r2"]
    assert ids(model="my-finetune") == ["r3"]
    assert ids(provider="vllm-internal") == ["r3"]
    assert ids(environment="staging") == ["r2"]
    assert ids(key_id=acme_key.pk) == ["r4", "r3", "r2", "r1"]
    assert ids(status="429") == ["r4"]
    assert ids(status="2xx") == ["r5", "r3", "r2", "r1"]
    assert ids(since="2026-03-01T13:00:00Z", until="2026-03-01T15:00:00Z") == ["r3", "r2"]
    assert ids(since="2026-03-01T13:00:00+01:00") == ["r5", "r4", "r3", "r2", "r1"]
    assert ids(since="2026-03-01T14:00:00+01:00") == ["r5", "r4", "r3", "r2"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 1001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"since": "2026-03-01T00:00:00"}, "since"),  # no time zone
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "until"),
        ({"status": "ok"}, "status"),
        ({"key_id": "abc"}, "key_id"),
        ({"cursor": "garbage!"}, "cursor"),
    ],
)
def test_invalid_record_queries_get_422_naming_the_field(acme_api: ApiClient, query: dict, field: str) -> None:
    response = acme_api.get("usage/records", **query)
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_aggregates_by_feature(acme_api: ApiClient, records) -> None:
    response = acme_api.get("usage/aggregates", group_by="feature")
    assert response.status_code == 200
    body = response.json()
    groups = {g["group"]: g for g in body["groups"]}
    assert [g["group"] for g in body["groups"]] == [None, "support-bot", "summarize"]  # dearest first
    bot = groups["support-bot"]
    assert bot["requests"] == 2 and bot["cost_usd"] == "0.750000000" and bot["unknown_cost_requests"] == 0
    assert bot["input_tokens"] == 1100 and bot["cached_input_tokens"] == 400 and bot["cache_write_tokens"] == 300
    assert bot["reasoning_tokens"] == 50
    summarize = groups["summarize"]
    assert summarize["requests"] == 2 and summarize["unknown_cost_requests"] == 1
    assert summarize["cost_usd"] == "0.000000000"
    total = body["total"]
    assert total["requests"] == 5 and total["unknown_cost_requests"] == 1
    assert Decimal(total["cost_usd"]) == Decimal("1.750000001")


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("tenant", {"initech", "umbrella", None}),
        ("model", {"gpt-4o-mini", "my-finetune"}),
        ("provider", {"openai", "vllm-internal"}),
        ("key", {"ci", None}),
        ("environment", {"staging", None}),
    ],
)
def test_aggregates_by_each_dimension(acme_api: ApiClient, records, group_by: str, expected: set) -> None:
    body = acme_api.get("usage/aggregates", group_by=group_by).json()
    assert {g["group"] for g in body["groups"]} == expected
    assert sum(g["requests"] for g in body["groups"]) == 5


def test_aggregates_by_key_carry_the_key_id(acme_api: ApiClient, records, acme_key) -> None:
    groups = acme_api.get("usage/aggregates", group_by="key").json()["groups"]
    ci = next(g for g in groups if g["group"] == "ci")
    assert ci["key_id"] == acme_key.pk and ci["requests"] == 4


def test_aggregates_by_hour_and_day_in_the_accounts_time_zone(globex, globex_api: ApiClient) -> None:
    # Europe/Paris is UTC+1 in March: 23:30 UTC on the 1st is 00:30 on the 2nd there.
    usage_record(globex, "g1", datetime(2026, 3, 1, 22, 30, tzinfo=UTC))
    usage_record(globex, "g2", datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    usage_record(globex, "g3", datetime(2026, 3, 1, 23, 45, tzinfo=UTC))
    days = globex_api.get("usage/aggregates", group_by="day").json()["groups"]
    assert [(g["group"], g["requests"]) for g in days] == [("2026-03-01", 1), ("2026-03-02", 2)]
    hours = globex_api.get("usage/aggregates", group_by="hour").json()["groups"]
    assert [(g["group"], g["requests"]) for g in hours] == [
        ("2026-03-01T23:00:00+01:00", 1), ("2026-03-02T00:00:00+01:00", 2)
    ]


def test_aggregates_respect_the_time_range_and_filters(acme_api: ApiClient, records) -> None:
    body = acme_api.get("usage/aggregates", group_by="day", since="2026-03-01T13:00:00Z",
                        until="2026-03-01T15:00:00Z").json()
    assert body["total"]["requests"] == 2
    assert body["since"].startswith("2026-03-01T13:00:00")
    filtered = acme_api.get("usage/aggregates", group_by="model", status="4xx").json()
    assert filtered["total"]["requests"] == 1


@pytest.mark.parametrize("query", [{}, {"group_by": "week"}, {"group_by": "feature", "since": "2026-01-01"}])
def test_invalid_aggregate_queries_get_422(acme_api: ApiClient, query: dict) -> None:
    response = acme_api.get("usage/aggregates", **query)
    assert response.status_code == 422
    assert ("group_by" if "since" not in query else "since") in response.json()["detail"]

"""The usage ledger: events written in batches, idempotent, and kept while the database is down."""

from __future__ import annotations

import httpx
import orjson
import pytest
from django.db import connections

from billing.ledger import usage_ingest, usage_record_batch
from billing.models import UsageRecord
from proxy.quota import events_stream_key
from tokonomics.redis_client import sync_redis

from ..conftest import KEY

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def _event(account_id: int, n: int) -> dict:
    return {
        "request_id": f"req_test_{n}", "account_id": account_id, "key_id": None, "provider": "openai",
        "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5, "cost_usd": "0.000004500",
        "status_code": 200, "created_at": 1_760_000_000.0 + n,
    }


@pytest.mark.django_db
def test_batch_is_idempotent_by_request_id(acme) -> None:  # type: ignore[no-untyped-def]
    events = [_event(acme.pk, n) for n in range(5)]
    usage_record_batch(events=events)
    usage_record_batch(events=events + [_event(acme.pk, 5)])
    assert UsageRecord.objects.count() == 6


@pytest.mark.django_db
def test_events_are_acked_and_deleted_after_writing(acme) -> None:  # type: ignore[no-untyped-def]
    client = sync_redis()
    for n in range(3):
        client.xadd(events_stream_key(acme.pk), {"e": orjson.dumps(_event(acme.pk, n))})
    assert usage_ingest(max_seconds=1) == 3
    assert client.xlen(events_stream_key(acme.pk)) == 0
    assert UsageRecord.objects.count() == 3


def test_database_down_during_traffic_then_every_record_arrives(stack, settings) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for _ in range(10):
        response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {KEY}"})
        ids.append(response.headers["x-tokonomics-request-id"])
    # The worker's database goes away: connections are refused.
    real_port = settings.DATABASES["default"]["PORT"]
    connections["default"].close()
    settings.DATABASES["default"]["PORT"] = "1"
    connections["default"].settings_dict["PORT"] = "1"
    try:
        with pytest.raises(Exception, match="(?i)connect|refused"):
            usage_ingest(max_seconds=1)
        for _ in range(5):  # traffic goes on while the database is down
            response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                                  headers={"Authorization": f"Bearer {KEY}"})
            assert response.status_code == 200
            ids.append(response.headers["x-tokonomics-request-id"])
    finally:
        connections["default"].close()
        settings.DATABASES["default"]["PORT"] = real_port
        connections["default"].settings_dict["PORT"] = real_port
    usage_ingest(max_seconds=1)
    usage_ingest(max_seconds=1)  # a second run finds nothing more: nothing doubled
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == sorted(ids)

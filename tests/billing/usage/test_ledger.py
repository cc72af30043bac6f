"""The usage ledger: events written in batches, idempotent, and kept while the database is down."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from billing.models import AuditEntry, UsageDeadLetter, UsageRecord
from billing.usage.deadletters import usage_dead_letter_replay
from billing.usage.ledger import usage_ingest, usage_record_batch
from proxy.exposition import metrics_text
from proxy.quota import events_stream_key
from tokonomics.redis_client import sync_redis

from ...support import KEY, usage_event

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


@pytest.mark.django_db
def test_batch_is_idempotent_by_request_id(acme) -> None:
    events = [usage_event(acme.pk, n) for n in range(5)]
    usage_record_batch(events=events)
    usage_record_batch(events=events + [usage_event(acme.pk, 5)])
    assert UsageRecord.objects.count() == 6


@pytest.mark.django_db
def test_events_are_acked_and_deleted_after_writing(acme) -> None:
    client = sync_redis()
    for n in range(3):
        client.xadd(events_stream_key(acme.pk), {"e": orjson.dumps(usage_event(acme.pk, n))})
    assert usage_ingest(max_seconds=1) == 3
    assert client.xlen(events_stream_key(acme.pk)) == 0
    assert UsageRecord.objects.count() == 3


def test_database_down_during_traffic_then_every_record_arrives(stack, settings) -> None:
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


def _raw(event: dict) -> bytes:
    return orjson.dumps(event)


@pytest.mark.django_db
def test_an_unstorable_event_is_set_aside_and_every_other_event_is_stored(acme, globex) -> None:
    client = sync_redis()
    acme_stream, globex_stream = events_stream_key(acme.pk), events_stream_key(globex.pk)
    # What an older proxy, or anyone writing to Redis, may have queued.
    hostile = usage_event(acme.pk, 2, model="gpt\x00" * 100, tags={"k\x00" * 50: "v\x00"}, provider="p" * 80)
    wrong_time = {**usage_event(acme.pk, 3), "created_at": "yesterday"}
    for raw in (_raw(usage_event(acme.pk, 1)), b"{not json\x00", _raw(hostile), _raw(wrong_time),
                _raw(usage_event(globex.pk, 4)), _raw(usage_event(acme.pk, 5))):
        client.xadd(acme_stream, {"e": raw})
    client.xadd(globex_stream, {"e": _raw(usage_event(globex.pk, 6))})

    usage_ingest(max_seconds=1)
    stored = dict(UsageRecord.objects.values_list("request_id", "account_id"))
    assert stored == {"req_test_1": acme.pk, "req_test_2": acme.pk, "req_test_5": acme.pk, "req_test_6": globex.pk}
    record = UsageRecord.objects.get(request_id="req_test_2")
    assert (record.model, record.provider, record.tags) == ("gpt" * 66 + "gp", "p" * 63, {"k" * 50: "v"})
    letters = {letter.request_id: letter for letter in UsageDeadLetter.objects.all()}
    assert set(letters) == {"", "req_test_3", "req_test_4"}
    assert "not JSON" in letters[""].reason and letters[""].raw == "{not json\\x00"
    assert "TypeError" in letters["req_test_3"].reason and letters["req_test_3"].account_id == acme.pk
    assert "stream of account" in letters["req_test_4"].reason  # never stored in globex's records
    assert all(letter.stream == acme_stream and letter.entry_id for letter in letters.values())
    assert client.xlen(acme_stream) == client.xlen(globex_stream) == 0
    text = metrics_text().decode()
    assert 'tokonomics_ledger_dead_letters_total{reason="malformed"} 1.0' in text
    assert 'tokonomics_ledger_dead_letters_total{reason="rejected"} 1.0' in text
    assert 'tokonomics_ledger_dead_letters_total{reason="account"} 1.0' in text
    assert "tokonomics_ledger_dead_letters_waiting 3.0" in text

    # The next run goes on for everyone.
    client.xadd(acme_stream, {"e": _raw(usage_event(acme.pk, 7))})
    usage_ingest(max_seconds=1)
    assert UsageRecord.objects.filter(request_id="req_test_7").exists()

    # Repaired in the admin, then replayed; what is still broken stays set aside with its reason.
    repaired = letters["req_test_3"]
    repaired.raw = _raw(usage_event(acme.pk, 3)).decode()
    repaired.save()
    with pytest.raises(CommandError, match="2 dead letter"):
        call_command("replaydeadletters", "--all")
    assert UsageRecord.objects.get(request_id="req_test_3").account_id == acme.pk
    repaired.refresh_from_db()
    assert repaired.replayed_at is not None
    assert AuditEntry.objects.filter(account=acme, action="usage_dead_letter.replay").count() == 1
    assert UsageDeadLetter.objects.filter(replayed_at__isnull=True).count() == 2
    assert "tokonomics_ledger_dead_letters_waiting 2.0" in metrics_text().decode()
    assert usage_dead_letter_replay(dead_letters=UsageDeadLetter.objects.all(), actor="test") == (0, 2)


def test_the_in_memory_fallback_stores_what_it_can_and_sets_the_rest_aside(transactional_db, acme) -> None:
    from proxy.context import ProxyContext

    async def fallback() -> int:
        ctx = ProxyContext()
        try:
            ctx.pending_events.append((acme.pk, _raw(usage_event(acme.pk, 1, model="a\x00b", tags={"t": "\x00"}))))
            ctx.pending_events.append((acme.pk, b"garbage"))
            ctx.pending_events.append((acme.pk, _raw(usage_event(acme.pk + 1000, 2))))  # an account that is gone
            ctx.pending_events.append((acme.pk, _raw(usage_event(acme.pk, 3))))
            await ctx._write_pending_to_database()
            return len(ctx.pending_events)
        finally:
            await ctx.close()

    assert asyncio.run(fallback()) == 0
    assert sorted(UsageRecord.objects.values_list("request_id", "model")) == [("req_test_1", "ab"),
                                                                             ("req_test_3", "gpt-4o-mini")]
    reasons = sorted(UsageDeadLetter.objects.values_list("reason", flat=True))
    assert len(reasons) == 2 and "does not exist" in reasons[0] and "not JSON" in reasons[1]


@pytest.mark.django_db
def test_dead_letters_are_listed_repaired_and_replayed_in_the_admin(client, superuser, acme) -> None:
    client.force_login(superuser)
    sync_redis().xadd(events_stream_key(acme.pk), {"e": _raw({**usage_event(acme.pk, 1), "created_at": "soon"})})
    usage_ingest(max_seconds=1)
    letter = UsageDeadLetter.objects.get()
    listing = client.get("/admin/billing/usagedeadletter/")
    assert listing.status_code == 200 and "req_test_1" in listing.content.decode()
    change = client.post(f"/admin/billing/usagedeadletter/{letter.pk}/change/",
                         {"raw": _raw(usage_event(acme.pk, 1)).decode()})
    assert change.status_code == 302
    repair = acme.audit_entries.get(action="usage_dead_letter.repaired")
    assert (repair.actor, repair.target) == (superuser, "req_test_1")
    assert '"soon"' in repair.before["raw"] and '"soon"' not in repair.after["raw"]
    replay = client.post("/admin/billing/usagedeadletter/", {"action": "replay", "_selected_action": [letter.pk]})
    assert replay.status_code == 302
    assert UsageRecord.objects.filter(request_id="req_test_1").exists()
    letter.refresh_from_db()
    assert letter.replayed_at is not None


def _gauge(text: str, name: str) -> float:
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


@pytest.mark.django_db
def test_ledger_lag_is_read_from_the_streams_until_the_ledger_stores_them(acme, globex) -> None:
    client = sync_redis()
    seconds, _ = client.time()
    # Waiting two minutes in acme's stream (as if the ledger had stopped), just now in globex's.
    client.xadd(events_stream_key(acme.pk), {"e": _raw(usage_event(acme.pk, 1))}, id=f"{(seconds - 120) * 1000}-0")
    client.xadd(events_stream_key(acme.pk), {"e": _raw(usage_event(acme.pk, 2))})
    client.xadd(events_stream_key(globex.pk), {"e": _raw(usage_event(globex.pk, 3))})
    client.set("tk:{a:1}:eventsnot", "a key the scan's pattern must not take for a stream")
    text = metrics_text().decode()
    assert 120 <= _gauge(text, "tokonomics_ledger_lag_seconds") < 130
    assert _gauge(text, "tokonomics_ledger_pending_events") == 3

    usage_ingest(max_seconds=1)
    text = metrics_text().decode()
    assert _gauge(text, "tokonomics_ledger_lag_seconds") == 0
    assert _gauge(text, "tokonomics_ledger_pending_events") == 0

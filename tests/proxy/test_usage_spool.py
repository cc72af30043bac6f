"""Usage held by a proxy process while Redis is unreachable survives the process being killed: it is
spooled to a local file, and another process drains the file of a dead one (proxy/spool.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
from django.conf import settings

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.quota import events_stream_key
from proxy.redis_pipeline import PipelinedRedis
from proxy.spool import PendingEvents, Spool, spool_drain
from tokonomics.redis_client import sync_redis

from ..support import KEY, PrivateRedis, ProxyProcess, make_account, make_key, wait_until

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def spooled_lines(directory: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in directory.glob("*.spool"))


def test_usage_held_during_a_redis_outage_survives_kill_9(
    settings, transactional_db, simulator, plans, private_redis: PrivateRedis, spool_dir: Path
) -> None:
    settings.REDIS_URL = private_redis.url
    sync_redis.cache_clear()
    account = make_account("acme", simulator, plans["pro"])
    make_key(account, KEY)
    ids = []
    with ProxyProcess() as first:
        private_redis.kill()
        for _ in range(5):
            response = httpx.post(f"{first.url}/proxy/openai/chat/completions", json=CHAT,
                                  headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
            assert response.status_code == 200  # no budget covers it: through, unenforced
            ids.append(response.headers["x-tokonomics-request-id"])
        # Each record is spooled as it is queued, just after its response has left.
        wait_until(lambda: spooled_lines(spool_dir) == 5, 5, interval=0.1)
        assert first.process is not None
        first.process.kill()  # SIGKILL: no shutdown, no flush
        first.process.wait(timeout=10)

    private_redis.start()  # back, and empty
    with ProxyProcess():  # a new process drains the dead one's spool at start-up
        def all_stored() -> bool:
            usage_ingest(max_seconds=0.5)
            return UsageRecord.objects.count() >= len(ids)

        wait_until(all_stored, 15, interval=0.1)
        usage_ingest(max_seconds=0.5)
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == sorted(ids)  # each exactly once
    assert all(not r.enforced for r in UsageRecord.objects.all())
    assert list(spool_dir.glob("*.spool")) == []


def test_a_spool_is_emptied_with_its_queue_and_drained_once_its_process_is_gone(spool_dir: Path) -> None:
    client = sync_redis()

    async def run() -> tuple[int, int, int]:
        live = PendingEvents(Spool(spool_dir))
        live.append((7, orjson.dumps({"request_id": "req_a"})))
        live.popleft()
        assert spooled_lines(spool_dir) == 0  # all delivered: nothing left to replay
        live.append((7, orjson.dumps({"request_id": "req_b"})))
        live.append((8, orjson.dumps({"request_id": "req_c", "model": "a\nb"})))
        redis = PipelinedRedis(settings.REDIS_URL, timeout=1.0)
        try:
            while_alive = await spool_drain(directory=spool_dir, redis=redis)  # locked: its process lives
            live.spool.close(keep=True)  # the process dies with events still queued
            after = await spool_drain(directory=spool_dir, redis=redis)
            again = await spool_drain(directory=spool_dir, redis=redis)
        finally:
            await redis.close()
        return while_alive, after, again

    assert asyncio.run(run()) == (0, 2, 0)
    assert [orjson.loads(f[b"e"])["request_id"] for _, f in client.xrange(events_stream_key(7))] == ["req_b"]
    assert orjson.loads(client.xrange(events_stream_key(8))[0][1][b"e"])["model"] == "a\nb"
    assert list(spool_dir.glob("*.spool")) == []

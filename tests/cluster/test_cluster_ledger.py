"""The ledger on a Redis Cluster: usage events the proxy appends to accounts' streams on different masters
are stored in PostgreSQL exactly once, however many times the ledger runs, and leave the streams."""

from __future__ import annotations

import asyncio

import httpx

from billing.models import UsageRecord
from billing.tasks import usage_ingest_task
from billing.usage.ledger import usage_ingest
from proxy.quota import events_stream_key
from tokonomics.redis_client import sync_redis

from ..support import CHAT, Stack, make_account, make_key
from .conftest import LocalCluster

CALLS_PER_ACCOUNT = 15


async def calls(proxy: str, keys: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=10) as client:
        return await asyncio.gather(*(
            client.post(f"{proxy}/proxy/openai/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
            for key in keys for _ in range(CALLS_PER_ACCOUNT)
        ))


def test_events_from_streams_on_every_master_are_stored_exactly_once(
    on_cluster: LocalCluster, stack: Stack, plans
) -> None:
    accounts, keys = [stack.account], ["mk_live_0123456789abcdefghijklmnopqrstuvwx"]
    # More accounts until their streams live on all three masters.
    while len({on_cluster.master_of(events_stream_key(a.pk)) for a in accounts}) < 3:
        account = make_account(f"team{len(accounts)}", stack.sim, plans["pro"])
        keys.append(f"mk_live_team{len(accounts):02d}6789abcdefghijklmnopqrstuvwx")
        make_key(account, keys[-1])
        accounts.append(account)
    responses = asyncio.run(calls(stack.proxy, keys))
    assert {r.status_code for r in responses} == {200}
    ids = {r.headers["x-tokonomics-request-id"] for r in responses}

    written = usage_ingest_task()  # the beat's task: its lock is a key on the cluster too
    written += usage_ingest(max_seconds=0.5)  # a second run finds nothing new

    assert written == len(ids) == len(keys) * CALLS_PER_ACCOUNT
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == ids
    for account in accounts:
        assert UsageRecord.objects.filter(account=account).count() == CALLS_PER_ACCOUNT
        assert sync_redis().xlen(events_stream_key(account.pk)) == 0

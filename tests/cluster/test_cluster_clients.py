"""REDIS_URL naming a cluster: both clients route by slot, every account's keys share one slot, SCAN-like
reads see every master."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from billing.sso.reset_throttle import PER_EMAIL_PER_HOUR, reset_mail_allowed
from proxy.budgets import account_prefix
from proxy.context import ProxyContext
from proxy.directory import BudgetEntry
from proxy.ledger_metrics import EVENT_STREAMS, LedgerLagCollector, _client
from proxy.quota import Quota, events_stream_key
from proxy.redis_cluster import ClusterRedis, proxy_redis
from proxy.redis_pipeline import LuaScript, PipelinedRedis
from proxy.spool import PendingEvents, Spool, spool_drain
from tokonomics.redis_client import cluster_address, is_cluster_url, sync_redis

from ..support import account_entry, key_entry
from .conftest import LocalCluster


def test_a_cluster_url_names_its_nodes_credentials_and_tls() -> None:
    address = cluster_address("rediss+cluster://tk:p%40ss@10.0.0.1:7000,10.0.0.2:7001/?ssl_cert_reqs=none&db=3")
    assert address.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (address.username, address.password, address.tls) == ("tk", "p@ss", True)
    assert address.client_options()["ssl_cert_reqs"] == "none"
    assert "db" not in address.client_options()
    assert is_cluster_url("redis+cluster://h:1/") and not is_cluster_url("redis://h:1/0")
    with pytest.raises(ImproperlyConfigured, match="database 0"):
        cluster_address("redis+cluster://h:1/2")
    with pytest.raises(ImproperlyConfigured, match="host:port"):
        cluster_address("redis+cluster://h1:1,h2/")


def test_the_proxy_picks_its_client_by_url(on_cluster: LocalCluster) -> None:
    assert isinstance(proxy_redis(on_cluster.url, timeout=1), ClusterRedis)
    assert isinstance(proxy_redis("redis://127.0.0.1:6379/2", timeout=1), PipelinedRedis)
    assert isinstance(sync_redis(), RedisCluster)


def test_every_key_a_call_touches_shares_its_accounts_slot() -> None:
    """The scripts' KEYS[] must all hash to one slot: the account's hash tag sees to it."""
    quota = Quota(PipelinedRedis("redis://127.0.0.1:1/0", timeout=1), reservation_ttl_ms=1000)  # never connects

    account = account_entry(77, budgets=(BudgetEntry(1, "account", "", "day", 10**9, True),
                                         BudgetEntry(2, "tenant", "*", "month", 10**9, True),
                                         BudgetEntry(3, "feature", "{x}", "month", 10**9, False)))
    plan = quota.plan_for(account, key_entry(5, account_id=77), feature="{evil}:x", tenant="}{a:1}", now=time.time())
    keys = [*plan.reserve_keys, *quota._settle_keys(77, 5), f"{account_prefix(77)}:settled:{{rid}}",
            *(c.key for c in plan.counters), *(c.values_key for c in plan.counters if c.values_key)]
    assert len(keys) > 8
    assert {key_slot(k.encode()) for k in keys} == {key_slot(account_prefix(77).encode())}


def test_the_proxy_client_runs_scripts_and_commands_on_the_right_master(on_cluster: LocalCluster) -> None:
    script = LuaScript.of("redis.call('INCRBY', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[1])")

    async def run() -> list[int]:
        client = ClusterRedis(on_cluster.url, timeout=2)
        try:
            results = []
            for account in range(1, 40):  # accounts spread over the three masters
                prefix = account_prefix(account)
                results.append(await client.evalsha(script, [f"{prefix}:x", f"{prefix}:y"], [account]))
                await client.execute("XADD", events_stream_key(account), "*", "e", b"{}")
            return results
        finally:
            await client.close()

    assert asyncio.run(run()) == list(range(1, 40))
    masters = {on_cluster.master_of(events_stream_key(account)) for account in range(1, 40)}
    assert len(masters) == 3


def test_scan_like_reads_see_every_master(on_cluster: LocalCluster) -> None:
    client = sync_redis()
    for account in range(1, 40):
        client.xadd(events_stream_key(account), {"e": b"{}"})
    _client.cache_clear()
    found = set(_client(on_cluster.url).scan_iter(match=EVENT_STREAMS, count=1000, _type="stream"))
    assert found == {events_stream_key(a).encode() for a in range(1, 40)}


def _settings_in_a_process(**env: str) -> subprocess.CompletedProcess[str]:
    code = "from django.conf import settings; print(settings.CELERY_BROKER_URL)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "tokonomics.settings", **env})


def test_a_cluster_needs_a_broker_of_its_own() -> None:
    refused = _settings_in_a_process(REDIS_URL="redis+cluster://127.0.0.1:7101/", CELERY_BROKER_URL="")
    assert refused.returncode != 0
    assert "Celery cannot use as its broker: set CELERY_BROKER_URL" in refused.stderr
    given = _settings_in_a_process(REDIS_URL="redis+cluster://127.0.0.1:7101/",
                                   CELERY_BROKER_URL="redis://127.0.0.1:6379/2")
    assert given.stdout.strip() == "redis://127.0.0.1:6379/2"
    single = _settings_in_a_process(REDIS_URL="redis://127.0.0.1:6379/2", CELERY_BROKER_URL="")
    assert single.stdout.strip() == "redis://127.0.0.1:6379/2"


def test_the_eviction_check_reads_the_clusters_policy(on_cluster: LocalCluster) -> None:
    async def policy() -> str:
        context = ProxyContext.__new__(ProxyContext)  # only its Redis client is used by this check
        context.redis = ClusterRedis(on_cluster.url, timeout=2)
        try:
            return await context.warn_if_redis_may_evict()
        finally:
            await context.redis.close()

    assert asyncio.run(policy()) == "noeviction"


def test_the_ledger_lag_gauge_reads_streams_on_every_master(on_cluster: LocalCluster) -> None:
    client = sync_redis()
    for account in range(1, 40):
        client.xadd(events_stream_key(account), {"e": b"{}"})
    _client.cache_clear()
    families = {family.name: family for family in LedgerLagCollector().collect()}
    pending = {sample.name: sample.value for family in families.values() for sample in family.samples}
    assert pending["tokonomics_ledger_pending_events"] == 39


def test_a_cluster_out_of_reach_is_an_outage_not_a_hang() -> None:
    """No node answers: the proxy's client raises a connection error within its timeout (the outage policy
    then applies), never an exception the proxy would not recognise as Redis being down."""

    async def attempt() -> float:
        client = ClusterRedis("redis+cluster://127.0.0.1:1/", timeout=0.3)
        started = time.monotonic()
        try:
            with pytest.raises((RedisConnectionError, RedisTimeoutError)):
                await client.execute("GET", "tk:{a:1}:x")
            return time.monotonic() - started
        finally:
            await client.close()

    assert asyncio.run(attempt()) < 1.0


def test_the_password_reset_throttle_counts_on_a_cluster(on_cluster: LocalCluster) -> None:
    """Its two counters (the address, the client) carry no common hash tag: counted without a transaction."""
    request = RequestFactory().post("/reset", REMOTE_ADDR="203.0.113.9")
    allowed = [reset_mail_allowed(request=request, email="a@example.com") for _ in range(PER_EMAIL_PER_HOUR + 1)]
    assert allowed == [True] * PER_EMAIL_PER_HOUR + [False]


def test_keys_of_two_slots_in_one_script_are_a_bug_not_an_outage(on_cluster: LocalCluster) -> None:
    """Were a script ever sent keys of two accounts, it must fail loudly (ResponseError, logged as the
    script failing) rather than pass for Redis being down."""
    script = LuaScript.of("return redis.call('GET', KEYS[1])")

    async def attempt() -> None:
        client = ClusterRedis(on_cluster.url, timeout=2)
        try:
            with pytest.raises(ResponseError) as raised:
                await client.evalsha(script, [f"{account_prefix(1)}:x", f"{account_prefix(2)}:x"], [])
            assert not isinstance(raised.value, RedisConnectionError)
        finally:
            await client.close()

    assert key_slot(account_prefix(1).encode()) != key_slot(account_prefix(2).encode())
    asyncio.run(attempt())


def test_a_dead_processs_spool_drains_into_streams_on_every_master(on_cluster: LocalCluster, spool_dir: Path) -> None:
    accounts = range(1, 40)
    dead = PendingEvents(Spool(spool_dir))
    for account in accounts:
        dead.append((account, orjson.dumps({"request_id": f"req_{account}"})))
    dead.spool.close(keep=True)  # the process dies with its events queued

    async def drain() -> int:
        client = ClusterRedis(on_cluster.url, timeout=2)
        try:
            return await spool_drain(directory=spool_dir, redis=client)
        finally:
            await client.close()

    assert asyncio.run(drain()) == len(accounts)
    client = sync_redis()
    assert all(orjson.loads(client.xrange(events_stream_key(a))[0][1][b"e"])["request_id"] == f"req_{a}"
               for a in accounts)
    assert list(spool_dir.glob("*.spool")) == []

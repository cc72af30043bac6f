"""The proxy's Redis client when REDIS_URL names a Redis Cluster.

PipelinedRedis speaks to one server over one socket; a cluster spreads the slots over several
masters and moves them when one fails. redis-py's asyncio RedisCluster already routes each command
to the master owning its key's slot (EVALSHA by its KEYS, which must share a slot: every key of an
account carries the account's hash tag) and follows MOVED/ASK after a failover. This wraps it in the
interface the proxy uses, and maps its errors to the ones the proxy already handles: a cluster that is
down, electing a new master or out of reach is an outage (ConnectionError / TimeoutError, so the
Redis-outage policy applies), never an error reply to give up on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    ClusterError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokonomics.redis_client import cluster_address, is_cluster_url

from .redis_pipeline import Arg, LuaScript, PipelinedRedis, ProxyRedis

# How many times redis-py follows a redirection or re-reads the slot map within one command; the command's
# overall time is bounded by the proxy's Redis timeout anyway.
CLUSTER_RETRIES = 3


class ClusterRedis:
    """`execute("GET", key)`, `evalsha(script, keys, args)` on a Redis Cluster; each command answers within
    `timeout` seconds or raises TimeoutError, like PipelinedRedis."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.commands = 0  # sent on this client: the benchmark reports them per call
        address = cluster_address(url)
        self.client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=timeout, base=0.01), CLUSTER_RETRIES), **address.client_options(),
        )

    async def execute(self, *args: Arg) -> Any:
        self.commands += 1
        try:
            async with asyncio.timeout(self.timeout):
                return await self.client.execute_command(*args)
        except TimeoutError:
            raise RedisTimeoutError(f"the Redis Cluster did not answer within {self.timeout} s") from None
        except ClusterCrossSlotError:
            raise  # a bug of ours (keys of two slots in one command), not an outage
        except (ClusterError, ClusterDownError, TryAgainError, AskError) as exc:
            # CLUSTERDOWN, TRYAGAIN, a redirection still bouncing: a master is failing over.
            raise RedisConnectionError(f"the Redis Cluster is not serving this slot now: {exc}") from exc
        except RedisClusterException as exc:
            if "same slot" in str(exc):
                raise ResponseError(str(exc)) from exc
            raise RedisConnectionError(f"the Redis Cluster cannot be reached: {exc}") from exc

    async def evalsha(self, script: LuaScript, keys: list[str], args: list[Arg]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            pass
        # A master new since the script was first run (a failover, a resharding) has not cached it yet.
        return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    async def close(self) -> None:
        await self.client.aclose()


def proxy_redis(url: str, *, timeout: float) -> ProxyRedis:
    """The proxy's client of the Redis REDIS_URL names: one pipelined connection to a server, or a cluster
    client."""
    if is_cluster_url(url):
        return ClusterRedis(url, timeout=timeout)
    return PipelinedRedis(url, timeout=timeout)

"""The synchronous Redis client of the Django side (web app, Celery tasks, commands), and how a Redis URL
names either one server or a Redis Cluster.

`redis+cluster://[user:password@]host:port[,host:port…]/` (or `rediss+cluster://` for TLS) names a
cluster by some of its nodes; the client learns the rest, and who owns which slot, from them. A cluster
has no numbered databases: the path must be empty or `/0`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# The TLS options a cluster URL may carry in its query, as redis-py names them.
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")

SyncRedis = redis.Redis | RedisCluster


@dataclass(frozen=True)
class ClusterAddress:
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_options: dict[str, str] = field(default_factory=dict)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments both of redis-py's cluster clients (sync and asyncio) take."""
        options: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.tls:
            options["ssl"] = True
            options.update(self.tls_options)
        return options


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def cluster_address(url: str) -> ClusterAddress:
    parts = urlsplit(url)
    if parts.scheme.lower() not in CLUSTER_SCHEMES:
        raise ImproperlyConfigured(f"{parts.scheme}:// does not name a Redis Cluster (use redis+cluster://)")
    if parts.path not in ("", "/", "/0"):
        raise ImproperlyConfigured("a Redis Cluster has only database 0: end REDIS_URL with / or /0")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":") if ":" in credentials else ("", "", credentials)
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"{host_port!r} in REDIS_URL is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    tls_options = {key: value for key, value in parse_qsl(parts.query) if key in _TLS_OPTIONS}
    return ClusterAddress(tuple(nodes), unquote(username) or None, unquote(password) or None,
                          tls=parts.scheme.lower() == "rediss+cluster", tls_options=tls_options)


def redis_connect(url: str, *, timeout: float) -> SyncRedis:
    """A client of the server or cluster `url` names; `timeout` bounds connecting and each answer."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    address = cluster_address(url)
    nodes = [ClusterNode(host, port) for host, port in address.nodes]  # type: ignore[no-untyped-call]  # untyped in redis-py
    return RedisCluster(startup_nodes=nodes,
                        socket_timeout=timeout, socket_connect_timeout=timeout, **address.client_options())


@lru_cache(maxsize=1)
def sync_redis() -> SyncRedis:
    return redis_connect(settings.REDIS_URL, timeout=5)

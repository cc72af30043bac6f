"""httpx clients for calls Tokonomics makes on an account's behalf (webhooks, Slack, OpenID Connect),
with the address policy of tokonomics/outbound_urls.py enforced when each connection is made.

When private URLs are off, the network backend resolves the name itself, checks every answer and
connects to a checked address; TLS still verifies and sends SNI for the name, and the Host header
is the name. A DNS server that changes its answer between the check and the connection has nothing
to swap: there is only one resolution.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from tokonomics.outbound_urls import BlockedAddress, addresses_checked, private_urls_allowed


class PolicyNetworkBackend(httpcore.SyncBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            answers = addresses_checked(host, port)
        except BlockedAddress as blocked:
            raise httpcore.ConnectError(str(blocked)) from None
        except OSError as error:
            raise httpcore.ConnectError(f"{host!r} does not resolve ({error})") from None
        last_error: Exception | None = None
        for _, address in answers:
            try:
                stream = super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:  # try the next checked address, as create_connection does
                last_error = error
                continue
            return stream
        assert last_error is not None
        raise last_error


class PolicyTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__(trust_env=False)
        # httpx has no public way to pass a network backend to its pool: build the pool it would have built.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), network_backend=PolicyNetworkBackend()
        )


def outbound_client(*, timeout: httpx.Timeout | float) -> httpx.Client:
    """A client for one delivery or sign-in. Environment proxies are ignored when private URLs are off:
    a proxy would resolve the name itself, out of reach of the check."""
    if private_urls_allowed():
        return httpx.Client(timeout=timeout)
    return httpx.Client(timeout=timeout, transport=PolicyTransport(), trust_env=False)


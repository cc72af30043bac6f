"""The httpx client used for webhooks, Slack and OpenID Connect when private URLs are off: one resolution,
checked, then the connection goes to that checked address while Host (and TLS SNI) stay the name."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tokonomics import outbound_http


@pytest.fixture
def host_echo() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Host", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_connects_to_the_checked_address_with_the_name_as_host(settings, monkeypatch, host_echo) -> None:
    settings.TOKONOMICS_ALLOW_PRIVATE_URLS = False
    port, seen = host_echo
    checked: list[str] = []

    def as_if_checked(host: str, port: int) -> list[tuple[int, str]]:
        checked.append(host)
        return [(socket.AF_INET, "127.0.0.1")]  # stands for a public address the policy accepted

    real_getaddrinfo = socket.getaddrinfo

    def no_second_lookup(host, *args, **kwargs):
        assert host == "127.0.0.1", f"resolved {host!r} again after the check"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(outbound_http, "addresses_checked", as_if_checked)
    monkeypatch.setattr(socket, "getaddrinfo", no_second_lookup)
    with outbound_http.outbound_client(timeout=5) as client:
        assert client.get(f"http://hooks.customer.test:{port}/x").status_code == 204
    assert checked == ["hooks.customer.test"]
    assert seen == [f"hooks.customer.test:{port}"]

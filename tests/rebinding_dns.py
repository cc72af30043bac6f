"""A DNS server under an attacker's control: a name that answers with a public address the first time
it is asked (when a URL is saved) and with 127.0.0.1 from then on (when it is used)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

REBINDING_HOST = "rebind.attacker.test"


class RebindingResolver:
    """Stands in for socket.getaddrinfo, the system resolver that every check and connection uses. Each
    name under REBINDING_HOST answers a public address once, then 127.0.0.1."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.answers: dict[str, list[str]] = {}

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
                 ) -> list[tuple[Any, ...]]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(REBINDING_HOST):
            return self.real(host, port, family, type, proto, flags)
        answers = self.answers.setdefault(name, [])
        answers.append("93.184.215.14" if not answers else "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], int(port or 0)))]


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> RebindingResolver:
    resolver = RebindingResolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


class Listener:
    """A loopback TCP port that counts the connections it is offered and answers none of them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    listening = Listener()
    listening._thread.start()
    yield listening
    listening._stop.set()
    listening._thread.join(timeout=2)
    listening.sock.close()

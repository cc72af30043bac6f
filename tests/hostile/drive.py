"""Two ways to send the proxy any request: the ASGI application called in this process (bytes no HTTP
server would parse for us: any path, header and body), and raw HTTP/1.1 over a socket to a server, so
what the server itself accepts is what reaches the proxy."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

Headers = Sequence[tuple[bytes, bytes]]


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    raised: str = ""  # the application raised instead of answering (a server would send a bare 500)
    server_refused: bool = False  # the HTTP server refused the request before any application saw it

    @property
    def request_id(self) -> str:
        return self.headers.get(b"x-tokonomics-request-id", b"").decode("latin-1")


class AsgiDriver:
    """`tokonomics.asgi.application` on an event loop of its own in a thread, started as uvicorn starts it."""

    def __init__(self) -> None:
        from tokonomics.asgi import application

        self.app = application
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-asgi", daemon=True)

    def __enter__(self) -> AsgiDriver:
        from proxy import context

        if context._context is not None:
            raise RuntimeError("a proxy context opened on another event loop is still open")
        self.thread.start()
        self._run(context.get_context(), timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        from proxy.context import close_context

        try:
            self._run(close_context(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)

    def _run(self, coroutine: Any, *, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def request(self, method: str, raw_path: bytes, *, query: bytes = b"", headers: Headers = (),
                body: bytes = b"") -> Reply:
        return self.start(method, raw_path, query=query, headers=headers, body=body).result(60)

    def start(self, method: str, raw_path: bytes, *, query: bytes = b"", headers: Headers = (),
              body: bytes = b"") -> Future[Reply]:
        """The request under way; its reply once the future is done."""
        return asyncio.run_coroutine_threadsafe(self._call(method, raw_path, query, headers, body), self.loop)

    async def _call(self, method: str, raw_path: bytes, query: bytes, headers: Headers, body: bytes) -> Reply:
        # What uvicorn puts in the scope: the target's path percent-decoded, the raw bytes beside it.
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
            "query_string": query, "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80),
            "headers": [(b"host", b"127.0.0.1"), *((n.lower(), v) for n, v in headers),
                        (b"content-length", str(len(body)).encode())],
        }
        finished = asyncio.Event()
        sent_body = False
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await finished.wait()  # the client stays until the response is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    finished.set()

        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # what the server turns into a bare 500
            return Reply(500, raised=f"{type(exc).__name__}: {exc}"[:2000])
        finally:
            finished.set()
        if not start:
            return Reply(500, raised="the application returned without a response")
        return Reply(start["status"], {n.lower(): v for n, v in start.get("headers", [])}, b"".join(chunks))


def raw_request(port: int, method: str, target: bytes, *, headers: Headers = (), body: bytes = b"",
                timeout: float = 30) -> Reply:
    """One HTTP/1.1 request written byte for byte (no client-side validation), answer read to the end."""
    head = [f"{method} ".encode() + target + b" HTTP/1.1", b"host: 127.0.0.1"]
    head += [name + b": " + value for name, value in headers]
    head += [b"content-length: " + str(len(body)).encode(), b"connection: close"]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    return _parse_reply(bytes(received))


def _parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines or len(lines[0].split(b" ")) < 2:
        return Reply(0, raised=f"no HTTP answer: {raw[:200]!r}")
    status = int(lines[0].split(b" ")[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    reply = Reply(status, headers, body)
    # uvicorn's own answer to a request it cannot parse: no application ever saw it.
    reply.server_refused = status == 400 and b"x-tokonomics-request-id" not in headers and body.startswith(
        b"Invalid HTTP request")
    return reply


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)

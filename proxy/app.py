"""Thin ASGI entries of the proxy: scope → gateway → send, mounted under /proxy/ by tokonomics.asgi and
tokonomics.proxy_asgi; and the few routes a proxy worker serves beside it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from .context import close_context, get_context
from .exposition import CONTENT_TYPE, metrics_authorized, metrics_process_stopped, metrics_text
from .gateway import Receive, Send, handle
from .relay import UpstreamCut
from .warmup import context_warm

log = logging.getLogger(__name__)


class _UpstreamCutAsWarning(logging.Filter):
    """A stream the provider cut is raised out of the app on purpose (relay.UpstreamCut), so the server
    closes the client's connection: the server logs it as one line, not as an application crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        cut = record.exc_info[1] if record.exc_info else None
        if isinstance(cut, UpstreamCut):
            record.msg, record.args, record.exc_info, record.exc_text = "%s", (str(cut),), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


for _server_log in ("uvicorn.error", "daphne.server"):  # where each server reports an application's exception
    logging.getLogger(_server_log).addFilter(_UpstreamCutAsWarning())


async def proxy_application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise ValueError(f"the proxy serves HTTP only, not {scope['type']!r}")
    await handle(scope, receive, send, await get_context())


async def lifespan(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Open the proxy's clients and warm them up when a worker starts (it reports ready only then, see
    proxy/warmup.py), and close them (flushing queued usage events) when it stops."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                context = await get_context()
            except Exception as exc:
                log.exception("proxy failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await context_warm(context)  # bounded, and never fails the start: a cold worker still serves
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await close_context()
            metrics_process_stopped()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refused_unless_get(scope: dict[str, Any], send: Send) -> bool:
    if scope["method"] in ("GET", "HEAD"):
        return False
    await _respond(send, 405, b"method not allowed\n", b"text/plain", [(b"allow", b"GET, HEAD")])
    return True


async def health_application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """/healthz of a proxy worker: it answers once its Redis and upstream clients are open."""
    if await _refused_unless_get(scope, send):
        return
    await get_context()
    await _respond(send, 200, b'{"status": "ok"}', b"application/json")


async def metrics_application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """/metrics of a proxy worker, as the web app serves it (CONTRACT §5)."""
    if await _refused_unless_get(scope, send):
        return
    authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    if not metrics_authorized(authorization):
        await _respond(send, 401, b"unauthorized\n", b"text/plain", [(b"www-authenticate", b"Bearer")])
        return
    # Reading every worker's files is disk I/O: off the event loop.
    body = await asyncio.to_thread(metrics_text)
    await _respond(send, 200, body, CONTENT_TYPE.encode())


async def not_found_application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Everything but the proxy, /healthz and /metrics belongs to the web app, which a proxy worker does not serve."""
    body = orjson.dumps({"error": {"message": f"{scope['path']} is not served by a proxy worker: the proxy is under "
                                              "/proxy/, the web app on the web server.", "type": "not_found"}})
    await _respond(send, 404, body, b"application/json")

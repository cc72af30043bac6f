"""Thin ASGI entry of the proxy: scope → gateway → send. Mounted under /proxy/ by tokonomics.asgi."""

from __future__ import annotations

import logging
from typing import Any

from .context import close_context, get_context
from .gateway import Receive, Send, handle

log = logging.getLogger(__name__)


async def proxy_application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise ValueError(f"the proxy serves HTTP only, not {scope['type']!r}")
    await handle(scope, receive, send, await get_context())


async def lifespan(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Open the proxy's clients when a worker starts and close them (flushing queued usage events)
    when it stops."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await get_context()
            except Exception as exc:
                log.exception("proxy failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await close_context()
            await send({"type": "lifespan.shutdown.complete"})
            return

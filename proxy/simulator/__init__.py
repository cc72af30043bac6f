"""The built-in LLM simulator upstream (see app.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

from aiohttp import web

from .app import create_app

__all__ = ["SimulatorThread", "create_app", "serve"]


def serve(*, host: str, port: int, latency_ms: float = 0, chunk_delay_ms: float = 0) -> None:
    """Run the simulator in the foreground (uvloop when available)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    web.run_app(create_app(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms), host=host, port=port,
                access_log=None, print=None)


class SimulatorThread:
    """The simulator on an ephemeral loopback port in a background thread (tests)."""

    def __init__(self, *, port: int = 0, latency_ms: float = 0, chunk_delay_ms: float = 0,
                 fixtures_dir: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms, fixtures_dir=fixtures_dir)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self.app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, self.sock).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the simulator did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self.sock.close()

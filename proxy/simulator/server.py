"""Running the simulator: in the foreground (`serve`, for bin/run and the benchmark) or on an
ephemeral port in a background thread (`SimulatorThread`, for tests)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .app import create_app

# The benchmark opens many connections at once; the default backlog of 128 would drop some.
BACKLOG = 1024


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def serve(*, host: str = "127.0.0.1", port: int = 8100, announce: Callable[[str], Any] | None = None,
          **app_options: Any) -> None:
    """Serve until SIGINT or SIGTERM. `app_options` are `create_app`'s; `announce` receives one line
    saying where the simulator listens, once it does."""
    app = create_app(**app_options)
    say = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    url = f"http://{host}:{port}"
    web.run_app(
        app, host=host, port=port, access_log=None, backlog=BACKLOG, shutdown_timeout=1,
        loop=event_loop_factory()(),  # run_app closes it
        print=lambda _banner: say(f"LLM simulator listening on {url} (OpenAI: {url}/v1, Anthropic: {url})"),
    )


class SimulatorThread:
    """The simulator on a loopback port (0: any free one) in a daemon thread, with its own event loop.

        with SimulatorThread(port=0, latency_ms=5) as sim:
            OpenAI(base_url=f"{sim.base_url}/v1", api_key="sk-test")
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **app_options: Any) -> None:
        self.app = create_app(**app_options)
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimulatorThread:
        self._sock = socket.create_server((self.host, self._requested_port), backlog=BACKLOG)
        self._port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"simulator:{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the simulator did not start within 10 s")
        if self._failure is not None:
            self._sock.close()
            raise RuntimeError("the simulator failed to start") from self._failure
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            self._loop = runner.get_loop()
            runner.run(self._serve())

    async def _serve(self) -> None:
        assert self._sock is not None
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1)
        try:
            await runner.setup()
            await web.SockSite(runner, self._sock, backlog=BACKLOG).start()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

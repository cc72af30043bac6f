"""A loopback forwarder that adds the session's headers to every call: the OpenAI and Anthropic SDKs read
their base URL and key from the environment, but no default headers, so the child's SDKs talk to this,
and this to Tokonomics. Answers and streams pass through untouched, chunk by chunk as they come (no
decompression); the caller's own X-Tokonomics-Session* headers are replaced by the run's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})
GIT_REFRESH_SECONDS = 10.0


class Forwarder:
    """Runs on its own event loop in a daemon thread; `start()` returns once it listens."""

    def __init__(self, *, upstream: str, session_headers: dict[str, str],
                 git_header: Callable[[], str] | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.session_headers = dict(session_headers)
        self.git_header = git_header
        self.port = 0
        self.calls = 0  # calls forwarded to /proxy/
        self._git_checked = time.monotonic()
        self._git_refreshing = False
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tokonomics-forwarder", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Forwarder:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the local forwarder did not start")
        return self

    def stop(self) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        # No total timeout: an agent's stream may last minutes; the SDK's own timeout governs.
        self._client = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None),
                                             connector=aiohttp.TCPConnector(limit=0))
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(runner.addresses[0][1])  # the ephemeral port bound
        self._ready.set()
        await self._stopped.wait()
        await runner.cleanup()
        await self._client.close()

    def _maybe_refresh_git(self) -> None:
        """The commit may move while the agent works: re-read it now and then, off the calls' path."""
        if self.git_header is None or self._git_refreshing:
            return
        if time.monotonic() - self._git_checked < GIT_REFRESH_SECONDS:
            return
        self._git_refreshing = True
        git_header = self.git_header

        async def refresh() -> None:
            try:
                value = await asyncio.to_thread(git_header)
                if value:
                    self.session_headers["X-Tokonomics-Session-Git"] = value
            finally:
                self._git_checked, self._git_refreshing = time.monotonic(), False

        asyncio.get_running_loop().create_task(refresh())

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() not in HOP_BY_HOP and not name.lower().startswith("x-tokonomics-session")}
        headers.update(self.session_headers)
        if request.path.startswith("/proxy/"):
            self.calls += 1
            self._maybe_refresh_git()
        # A request body is read whole (prompts are small; every ASGI server then gets a Content-Length, not
        # a chunked upload); the answer is what streams.
        body = await request.read() if request.body_exists else None
        try:
            upstream = await self._client.request(request.method, self.upstream + request.path_qs, headers=headers,
                                                  data=body, allow_redirects=False)
        except aiohttp.ClientError as exc:
            return web.json_response({"error": {"type": "api_error", "message": f"Tokonomics unreachable: {exc}"}},
                                     status=502)
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            if upstream.headers.get("Content-Length", "").isdigit():
                response.content_length = int(upstream.headers["Content-Length"])
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        return response

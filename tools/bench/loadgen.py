"""The built-in load generator, for machines without wrk: an aiohttp client in its own process
(`python -m tools.bench.loadgen SPEC.json`), so it never competes with the proxy's event loop.

SPEC: {"url", "headers", "bodies": [str], "concurrency", "duration", "mode": "load" | "hold"}.
"load" keeps `concurrency` requests in flight for `duration` seconds and prints one JSON summary.
"hold" opens `concurrency` streams, prints `OPEN n` once each has its first event, and keeps them
open until its standard input closes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .stats import Histogram


class Load:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.url: str = spec["url"]
        self.headers = {"Content-Type": "application/json", **spec.get("headers", {})}
        self.bodies = [body.encode() for body in spec["bodies"]]
        self.concurrency: int = spec["concurrency"]
        self.duration: float = spec["duration"]
        self.latency = Histogram()
        self.first_event = Histogram()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.sent = 0

    async def run(self) -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
            started = time.perf_counter()
            deadline = started + self.duration
            await asyncio.gather(*(self._worker(session, deadline) for _ in range(self.concurrency)))
            elapsed = time.perf_counter() - started
        return {
            "requests": self.latency.total,
            "elapsed_s": elapsed,
            "statuses": {str(status): count for status, count in self.statuses.items()},
            "errors": dict(self.errors),
            "latency": _summary(self.latency),
            "first_event": _summary(self.first_event) if self.first_event.total else None,
        }

    async def _worker(self, session: aiohttp.ClientSession, deadline: float) -> None:
        while time.perf_counter() < deadline:
            body = self.bodies[self.sent % len(self.bodies)]
            self.sent += 1
            start = time.perf_counter()
            try:
                async with session.post(self.url, data=body, headers=self.headers) as response:
                    first = True
                    async for chunk in response.content.iter_any():
                        if first and chunk and response.content_type == "text/event-stream":
                            self.first_event.add((time.perf_counter() - start) * 1e6)
                        first = False
                    self.statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.errors[type(exc).__name__] += 1
                continue
            self.latency.add((time.perf_counter() - start) * 1e6)


def _summary(histogram: Histogram) -> dict[str, float]:
    summary = histogram.summary()
    return {name: getattr(summary, name) for name in summary.__slots__}


async def hold(spec: dict[str, Any]) -> None:
    """Open `concurrency` streams and keep them open until standard input closes."""
    count: int = spec["concurrency"]
    headers = {"Content-Type": "application/json", **spec.get("headers", {})}
    body = spec["bodies"][0].encode()
    opened = asyncio.Event()
    open_streams = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)

    async def stream(session: aiohttp.ClientSession) -> None:
        nonlocal open_streams
        async with session.post(spec["url"], data=body, headers=headers) as response:
            response.raise_for_status()
            await response.content.readany()
            open_streams += 1
            if open_streams == count:
                opened.set()
            async for _ in response.content.iter_any():
                pass

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(stream(session)) for _ in range(count)]
        waiter = asyncio.create_task(opened.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=60)
        if waiter not in done:
            failures = [str(t.exception()) for t in tasks if t.done() and t.exception() is not None]
            print(f"FAILED {open_streams} open; {failures[:1]}", flush=True)
            return
        print(f"OPEN {open_streams}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str]) -> None:
    spec = orjson.loads(Path(argv[0]).read_bytes())
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    if spec.get("mode") == "hold":
        runner(hold(spec))
        return
    result = runner(Load(spec).run())
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])

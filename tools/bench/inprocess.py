"""The proxy's own CPU per call, without an HTTP server in front: `proxy.gateway.handle` driven in
process against the built-in simulator and a real Redis, budgets and rate limits on (or off).

    DEBUG=1 .venv/bin/python -m tools.bench.inprocess --concurrency 16 [--stream] [--enforcement off]
        [--otel [--traceparent] [--alternate N]] [--routes on|alternate [--alternate N]] [--profile] [--calls 4000]

The figure to compare is "CPU µs per call" (this process's CPU time, simulator and Redis excluded).
`--otel` turns tracing on (proxy/tracing.py): a span per call, batch-exported over OTLP/HTTP to a local
sink that discards it (tools/bench/otlp_sink.py, a process of its own); the export's encoding runs in this
process, so its CPU is counted; `--traceparent` has every call continue a client's trace; `--alternate N`
first runs N phases each with tracing off and on, in turns, and prints both medians.
`--routes on` makes the model a route with one target (the same endpoint and model: proxy/routing.py's work
with no retry); `--routes alternate --alternate N` runs N phases each with routes off and on, in turns.
`--profile` prints cProfile's top functions, timed with the process's CPU clock rather than the wall
clock (on a busy machine the wall clock charges socket writes with other processes' time).
Keys and accounts are fixed entries, so no database is needed; Redis database 15 (one of the
benchmark's, never a test run's) is used and flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import time
from typing import Any

import django

from tools.bench.environment import REDIS_DBS, free_port

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokonomics.settings")

ACCOUNT_ID, KEY_ID = 777, 5
KEY = "mk_" + "b" * 48


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--enforcement", choices=("on", "off"), default="on")
    parser.add_argument("--otel", action="store_true", help="a span per call, exported to a local OTLP sink")
    parser.add_argument("--traceparent", action="store_true", help="every call continues a client's trace")
    parser.add_argument("--alternate", type=int, default=0, metavar="N",
                        help="with --otel: N phases each of tracing off and on, in turns, --calls split among them")
    parser.add_argument("--routes", choices=("off", "on", "alternate"), default="off",
                        help="the model names a route with one target (alternate: off and on in turns)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--redis-url", default=f"redis://127.0.0.1:6379/{REDIS_DBS[0]}")
    return parser.parse_args()


async def run(args: argparse.Namespace, upstream: str) -> tuple[float, float]:
    # Imported once main() has pointed the settings at --redis-url and set Django up.
    from proxy import gateway
    from proxy.budgets import BudgetEntry
    from proxy.context import ProxyContext
    from proxy.directory import AccountEntry, EndpointEntry, KeyEntry, RouteEntry, RouteTarget
    from proxy.quota import seeded_marker_key

    on = args.enforcement == "on"
    budgets = (
        BudgetEntry(1, "account", "", "month", 10**18, True), BudgetEntry(2, "tenant", "*", "day", 10**18, True),
        BudgetEntry(3, "feature", "search", "day", 10**18, False), BudgetEntry(4, "key", "*", "hour", 10**18, True),
    ) if on else ()
    account = AccountEntry(
        id=ACCOUNT_ID, timezone="UTC", monthly_request_limit=10**9 if on else 0,
        on_redis_unavailable="default", allow_unmetered_routes=False,
        endpoints={"openai": EndpointEntry("openai", "openai", upstream + "/v1", "openai", "sk-simulated")},
        budgets=budgets, prices={}, slug="bench",
    )
    routes = {"gpt-4o-mini": RouteEntry("gpt-4o-mini", "fallback", (RouteTarget("openai", "gpt-4o-mini"),))}
    account.routes = routes if args.routes == "on" else {}
    limits = (10**8, 10**11, 10**5) if on else (0, 0, 0)
    key = KeyEntry(id=KEY_ID, account_id=ACCOUNT_ID, name="main", environment="", allowed_patterns=(),
                   expires_at=None, revoked=False, requests_per_minute=limits[0], tokens_per_minute=limits[1],
                   max_concurrent=limits[2])

    ctx = ProxyContext()
    ctx.start()

    async def the_key(key_hash: str) -> KeyEntry | None:
        return key

    async def the_account(account_id: int) -> AccountEntry | None:
        return account

    ctx.directory.key, ctx.directory.account = the_key, the_account  # type: ignore[method-assign]
    await ctx.redis.execute("FLUSHDB")
    await ctx.redis.execute("SADD", seeded_marker_key(ACCOUNT_ID), ctx.quota.fingerprint(account))
    body = (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}],"max_tokens":64,'
            b'"stream":' + (b"true" if args.stream else b"false") + b"}")
    scope = {
        "type": "http", "method": "POST", "path": "/proxy/openai/chat/completions",
        "raw_path": b"/proxy/openai/chat/completions", "query_string": b"",
        "headers": [(b"host", b"proxy"), (b"content-type", b"application/json"),
                    (b"authorization", b"Bearer " + KEY.encode()), (b"x-feature-name", b"search"),
                    (b"x-tenant-id", b"t1"), (b"x-tokonomics-tags", b"intent=bench"),
                    (b"content-length", str(len(body)).encode()),
                    *([(b"traceparent", b"00-" + b"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
                      if args.traceparent else [])],
    }

    async def one_call() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never leaves
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            pass

        await gateway.handle(scope, receive, send, ctx)

    async def client(calls: int) -> None:
        for _ in range(calls):
            await one_call()

    per_client = max(1, args.calls // args.concurrency)
    await asyncio.gather(*(client(max(1, 200 // args.concurrency)) for _ in range(args.concurrency)))  # warm up
    if ctx.tracing is not None:  # the warm-up's spans exported before the measure
        await asyncio.to_thread(ctx.tracing.processor.force_flush)
    if args.alternate and args.routes == "alternate":
        await alternate_routes(args, account, routes, client)
    elif args.alternate:
        await alternate(args, ctx, client)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(per_client) for _ in range(args.concurrency)))
    if ctx.tracing is not None:  # every span of the run exported within the measure, the last batch too
        await asyncio.to_thread(ctx.tracing.processor.force_flush)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await ctx.redis.execute("FLUSHDB")
    await ctx.close()
    calls = per_client * args.concurrency
    return cpu / calls, wall / calls


async def alternate(args: argparse.Namespace, ctx: Any, client: Any) -> None:
    """Tracing off and on in turns, in this one process: a difference a noisy host hides between runs."""
    tracing, per_phase = ctx.tracing, max(1, args.calls // args.alternate // args.concurrency)
    cost: dict[bool, list[float]] = {False: [], True: []}
    for phase in range(args.alternate * 2):
        traced = phase % 2 == 1
        ctx.tracing = tracing if traced else None
        cpu = time.process_time()
        await asyncio.gather(*(client(per_phase) for _ in range(args.concurrency)))
        if traced:
            await asyncio.to_thread(tracing.processor.force_flush)
        cost[traced].append((time.process_time() - cpu) / (per_phase * args.concurrency) * 1e6)
    ctx.tracing = tracing
    off, on = statistics.median(cost[False]), statistics.median(cost[True])
    print(f"alternating {args.alternate}× off/on: CPU off {off:.0f} µs, on {on:.0f} µs per call (medians), "
          f"tracing adds {on - off:.0f} µs; phases off {[round(c) for c in cost[False]]}, "
          f"on {[round(c) for c in cost[True]]}")


async def alternate_routes(args: argparse.Namespace, account: Any, routes: dict[str, Any], client: Any) -> None:
    """Routes off and on in turns, in this one process (the route: one target, no retry)."""
    per_phase = max(1, args.calls // args.alternate // args.concurrency)
    cost: dict[bool, list[float]] = {False: [], True: []}
    for phase in range(args.alternate * 2):
        routed = phase % 2 == 1
        account.routes = routes if routed else {}
        cpu = time.process_time()
        await asyncio.gather(*(client(per_phase) for _ in range(args.concurrency)))
        cost[routed].append((time.process_time() - cpu) / (per_phase * args.concurrency) * 1e6)
    account.routes = {}
    off, on = statistics.median(cost[False]), statistics.median(cost[True])
    print(f"alternating {args.alternate}× routes off/on: CPU off {off:.0f} µs, on {on:.0f} µs per call (medians), "
          f"routing adds {on - off:.0f} µs; phases off {[round(c) for c in cost[False]]}, "
          f"on {[round(c) for c in cost[True]]}")


def main() -> None:
    args = parse_args()
    os.environ["REDIS_URL"] = args.redis_url
    sink = None
    if args.otel:
        sink_port = free_port()
        sink = subprocess.Popen([sys.executable, "-m", "tools.bench.otlp_sink", "--port", str(sink_port)])
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
    else:
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        os.environ.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    django.setup()
    import uvloop

    port = free_port()
    simulator = subprocess.Popen([sys.executable, "-m", "proxy.simulator", "--host", "127.0.0.1", "--port", str(port)],
                                 stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        if profiler:
            profiler.enable()
        cpu, wall = uvloop.run(run(args, f"http://127.0.0.1:{port}"))
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        mode = "streamed" if args.stream else "JSON"
        print(f"{mode}, {args.concurrency} concurrent, enforcement {args.enforcement}, "
              f"tracing {'on' if args.otel else 'off'}, routes {args.routes}: "
              f"CPU {cpu * 1e6:.0f} µs per call, wall {wall * 1e6:.0f} µs per call"
              + (" (profiled: inflated)" if args.profile else ""))
    finally:
        simulator.kill()
        if sink is not None:
            sink.kill()


if __name__ == "__main__":
    main()

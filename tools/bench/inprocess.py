"""The proxy's own CPU per call, without an HTTP server in front: `proxy.gateway.handle` driven in
process against the built-in simulator and a real Redis, budgets and rate limits on (or off).

    DEBUG=1 .venv/bin/python -m tools.bench.inprocess --concurrency 16 [--stream] [--enforcement off]
        [--rate-limits off] [--alternate-leases 5]
        [--otel [--traceparent] [--alternate N]] [--routes on|alternate [--alternate N]] [--profile] [--calls 4000]

The figure to compare is "CPU µs per call" (this process's CPU time, simulator and Redis excluded).
`--otel` turns tracing on (proxy/tracing.py): a span per call, batch-exported over OTLP/HTTP to a local
sink that discards it (tools/bench/otlp_sink.py, a process of its own); the export's encoding runs in this
process, so its CPU is counted; `--traceparent` has every call continue a client's trace; `--alternate N`
first runs N phases each with tracing off and on, in turns, and prints both medians.
`--routes on` makes the model a route with one target (the same endpoint and model: proxy/routing.py's work
with no retry); `--routes alternate --alternate N` runs N phases each with routes off and on, in turns.
`--guardrails on` gives the key a guardrail policy with the default PII set (masking); `--guardrails alternate
--alternate N` runs N phases each without and with it, in turns, and prints both medians (without a policy the
call's guardrails step is one attribute check).
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
                        help="with --otel, --routes or --guardrails alternate: N phases each off and on, in turns, "
                             "--calls split among them")
    parser.add_argument("--routes", choices=("off", "on", "alternate"), default="off",
                        help="the model names a route with one target (alternate: off and on in turns)")
    parser.add_argument("--guardrails", choices=("off", "on", "alternate"), default="off",
                        help="a guardrail policy on the key (the default PII set); alternate: with --alternate")
    parser.add_argument("--rate-limits", choices=("on", "off"), default="on",
                        help="with enforcement on: the key's rate limits (never leased: every call reserves in Redis)")
    parser.add_argument("--alternate-leases", type=int, default=0, metavar="N",
                        help="N phases each of budget leases off and on, in turns, --calls split among them")
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
    limits = (10**8, 10**11, 10**5) if on and args.rate_limits == "on" else (0, 0, 0)
    key = KeyEntry(id=KEY_ID, account_id=ACCOUNT_ID, name="main", environment="", allowed_patterns=(),
                   expires_at=None, revoked=False, requests_per_minute=limits[0], tokens_per_minute=limits[1],
                   max_concurrent=limits[2])

    from dataclasses import replace

    from proxy.guardrails.policy import DEFAULT_PII_TYPES, compile_policy

    guarded = replace(key, guardrails=compile_policy({"pii": {"types": list(DEFAULT_PII_TYPES), "action": "mask"}}))
    keys = {False: key, True: guarded}
    current = [guarded if args.guardrails == "on" else key]

    ctx = ProxyContext()
    ctx.start()

    # --alternate-leases also runs phases with nothing enforced: these entries, swapped in per phase.
    plain = AccountEntry(
        id=ACCOUNT_ID, timezone="UTC", monthly_request_limit=0, on_redis_unavailable="default",
        allow_unmetered_routes=False, endpoints=account.endpoints, budgets=(), prices={}, slug="bench",
    )
    plain_key = KeyEntry(id=KEY_ID, account_id=ACCOUNT_ID, name="main", environment="", allowed_patterns=(),
                         expires_at=None, revoked=False, requests_per_minute=0, tokens_per_minute=0, max_concurrent=0)
    entries = {"enforced": (account, key), "plain": (plain, plain_key)}
    serving = ["enforced"]

    async def the_key(key_hash: str) -> KeyEntry | None:
        return plain_key if serving[0] == "plain" else current[0]  # current: with or without guardrails

    async def the_account(account_id: int) -> AccountEntry | None:
        return entries[serving[0]][0]

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

    latencies: list[float] = []

    async def one_call() -> None:
        delivered = False
        started = time.perf_counter()

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never leaves
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            # The client has its answer with the last body message (the settle comes after it).
            if message["type"] == "http.response.body" and not message.get("more_body"):
                latencies.append(time.perf_counter() - started)

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
    elif args.alternate and args.guardrails == "alternate":
        await alternate_guardrails(args, client, keys, current)
    elif args.alternate:
        await alternate(args, ctx, client)
    if args.alternate_leases:
        await alternate_leases(args, ctx, client, serving, latencies)
    if ctx.quota.leases is not None:
        await ctx.quota.leases.flush()  # the warm-up's leased calls settled before the measure
    cpu, wall = time.process_time(), time.perf_counter()
    trips, commands = ctx.quota.round_trips_before_upstream, ctx.redis.commands
    await asyncio.gather(*(client(per_client) for _ in range(args.concurrency)))
    if ctx.tracing is not None:  # every span of the run exported within the measure, the last batch too
        await asyncio.to_thread(ctx.tracing.processor.force_flush)
    if ctx.quota.leases is not None:
        await ctx.quota.leases.flush()  # the run's own settles and events are part of its cost
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    calls = per_client * args.concurrency
    print(f"Redis round trips before the upstream: {(ctx.quota.round_trips_before_upstream - trips) / calls:.3f} "
          f"per call; Redis commands (all paths): {(ctx.redis.commands - commands) / calls:.3f} per call; "
          f"leases {'on' if ctx.quota.leases is not None else 'off'}")
    await ctx.redis.execute("FLUSHDB")
    await ctx.close()
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


async def alternate_guardrails(
    args: argparse.Namespace, client: Any, keys: dict[bool, Any], current: list[Any]
) -> None:
    """Calls with a key without and with a guardrail policy in turns, in this one process."""
    per_phase = max(1, args.calls // args.alternate // args.concurrency)
    cost: dict[bool, list[float]] = {False: [], True: []}
    for phase in range(args.alternate * 2):
        guarded = phase % 2 == 1
        current[0] = keys[guarded]
        cpu = time.process_time()
        await asyncio.gather(*(client(per_phase) for _ in range(args.concurrency)))
        cost[guarded].append((time.process_time() - cpu) / (per_phase * args.concurrency) * 1e6)
    current[0] = keys[False]
    off, on = statistics.median(cost[False]), statistics.median(cost[True])
    print(f"alternating {args.alternate}× guardrails off/on: CPU off {off:.0f} µs, on {on:.0f} µs per call "
          f"(medians), the PII policy adds {on - off:.0f} µs; phases off {[round(c) for c in cost[False]]}, "
          f"on {[round(c) for c in cost[True]]}")
async def alternate_leases(args: argparse.Namespace, ctx: Any, client: Any, serving: list[str],
                           latencies: list[float]) -> None:
    """Nothing enforced, budgets with leases off, budgets with leases on, in turns, in this one process (a
    noisy host moves every arm alike): per arm the medians over its phases of the p50 call latency
    (accept to the last body message, simulator included), CPU per call, Redis round trips before the
    upstream and Redis commands per call."""
    book, per_phase = ctx.quota.leases, max(1, args.calls // args.alternate_leases // args.concurrency)
    if book is None:
        raise SystemExit("--alternate-leases needs leases (TOKONOMICS_LEASE_FRACTION > 0)")
    arms = ("budgets off", "leases off", "leases on")
    seen: dict[str, list[tuple[float, float, float, float]]] = {arm: [] for arm in arms}
    for phase in range(args.alternate_leases * len(arms)):
        arm = arms[phase % len(arms)]
        await book.flush(final=arm != "leases on")  # leases given back before a phase without them
        serving[0] = "plain" if arm == "budgets off" else "enforced"
        ctx.quota.leases = book if arm == "leases on" else None
        calls = per_phase * args.concurrency
        if arm == "leases on":  # a second of spend sizes the leases, as in steady traffic
            await asyncio.gather(*(client(per_phase) for _ in range(args.concurrency)))
            await book.flush()
        latencies.clear()
        trips, commands = ctx.quota.round_trips_before_upstream, ctx.redis.commands
        cpu = time.process_time()
        await asyncio.gather(*(client(per_phase) for _ in range(args.concurrency)))
        if arm == "leases on":
            await book.flush()  # the phase's settles and events are part of its cost
        seen[arm].append(((time.process_time() - cpu) / calls * 1e6, statistics.median(latencies) * 1e6,
                          (ctx.quota.round_trips_before_upstream - trips) / calls,
                          (ctx.redis.commands - commands) / calls))
    ctx.quota.leases, serving[0] = book, "enforced"
    base = statistics.median(x[1] for x in seen["budgets off"])
    for arm in arms:
        cpu, p50, trips, commands = (statistics.median(x[i] for x in seen[arm]) for i in range(4))
        print(f"{arm:11} ({args.alternate_leases} phases, medians): p50 {p50:.0f} µs ({p50 - base:+.0f} µs over "
              f"budgets off), CPU {cpu:.0f} µs per call; Redis round trips before the upstream {trips:.3f}, "
              f"Redis commands {commands:.3f} per call")


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
              f"tracing {'on' if args.otel else 'off'}, routes {args.routes}, guardrails {args.guardrails}: "
              f"CPU {cpu * 1e6:.0f} µs per call, wall {wall * 1e6:.0f} µs per call"
              + (" (profiled: inflated)" if args.profile else ""))
    finally:
        simulator.kill()
        if sink is not None:
            sink.kill()


if __name__ == "__main__":
    main()

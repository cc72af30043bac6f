"""The long measurements: memory with many streams held open, and memory drift under a steady soak."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

import orjson

from .load import LoadRun
from .processes import Cores, Server, cpu_seconds, pinned, rss_bytes
from .report import Soak, StreamsOpen
from .scenarios import MIXED, STREAM, Target

if TYPE_CHECKING:
    from .runner import Bench

# The simulator paces these streams at one event a second for ten minutes: they stay open until closed.
SLOW_STREAM_HEADERS = {"X-Sim-Chunk-Delay-Ms": "1000", "X-Sim-Words": "600"}
SOAK_CONCURRENCY = 16


def worker_rss_mb(server: Server) -> list[float]:
    return [rss_bytes(pid) / 2**20 for pid in server.worker_pids()]


def streams_open(*, bench: Bench, server: Server, target: Target, count: int) -> StreamsOpen:
    bench.say(f"Holding {count} streams open through the proxy:")
    before = worker_rss_mb(server)
    spec = bench.env.workdir / "hold.json"
    spec.write_bytes(orjson.dumps({
        "url": target.url, "headers": {**target.headers, **SLOW_STREAM_HEADERS},
        "bodies": [STREAM.bodies[0].decode()], "concurrency": count, "mode": "hold",
    }))
    cores = Cores.split(proxy_workers=len(server.worker_pids()), pin=bench.options.pin)
    holder = subprocess.Popen([sys.executable, "-m", "tools.bench.loadgen", str(spec)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cores.load),
                              cwd=bench.base_dir)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        line = holder.stdout.readline().strip()
        opened = int(line.split()[1]) if line.startswith("OPEN") else 0
        time.sleep(2)  # let every worker settle with its streams
        during = worker_rss_mb(server)
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
    if not opened:
        raise RuntimeError(f"could not hold {count} streams open: {line or 'the load generator died'}\n"
                           f"{server.log_tail()}")
    time.sleep(1)
    after = worker_rss_mb(server)
    bench.env.take_usage_events()
    result = StreamsOpen(count=count, opened=opened, rss_before_mb=before, rss_open_mb=during, rss_after_mb=after)
    bench.say(result.line())
    return result


def soak(*, bench: Bench, server: Server, target: Target, cores: Cores, minutes: float) -> Soak:
    total = minutes * 60
    interval = 30.0 if total >= 600 else max(1.0, total / 20)
    warm_up = min(300.0, total / 3)
    bench.say(f"Soak: {minutes:g} min of mixed JSON and streamed calls at {SOAK_CONCURRENCY} connections, "
              f"RSS every {interval:g} s, drift measured after {warm_up:g} s")
    bench.warm_up(target, server, cores)
    pids = server.all_pids()
    cpu_before = cpu_seconds(pids)
    run = LoadRun(tool=bench.options.tool, target=target, mode=MIXED, concurrency=SOAK_CONCURRENCY,
                  duration=total, workdir=bench.env.workdir, cpus=cores.load)
    started = time.monotonic()
    samples: list[tuple[float, list[float]]] = [(0.0, worker_rss_mb(server))]
    events = 0
    while run.process.poll() is None:
        time.sleep(min(interval, max(0.1, started + len(samples) * interval - time.monotonic())))
        elapsed = time.monotonic() - started
        if elapsed >= len(samples) * interval and elapsed <= total:
            samples.append((elapsed, worker_rss_mb(server)))
            # Nothing drains the usage stream here: empty it as we go so Redis does not grow for 30 minutes.
            events += bench.env.take_usage_events()
            rss = ", ".join(f"{mb:.1f}" for mb in samples[-1][1])
            bench.say(f"  {elapsed / 60:5.1f} min  RSS per worker: {rss} MB")
    load = run.result(timeout=60)
    cpu = cpu_seconds(pids) - cpu_before
    events += bench.env.take_usage_events()
    result = Soak(minutes=minutes, concurrency=SOAK_CONCURRENCY, warm_up_s=warm_up, samples=samples, load=load,
                  proxy_cpu_us=cpu * 1e6 / max(1, load.requests), usage_events=events)
    bench.say(result.line())
    return result

"""The benchmark's plan: the same loads straight at the simulator and through each proxy, with
the proxy's CPU time, memory and usage events read around every load."""

from __future__ import annotations

import os
import resource
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from . import longrun
from .environment import BenchEnvironment, free_port
from .litellm import litellm_config, litellm_environment
from .load import run_load
from .processes import Cores, Server, cpu_seconds, rss_bytes, start_litellm, start_proxy, start_simulator
from .report import Cell, FirstCall, Report, Scaling
from .scenarios import JSON, STREAM, Mode, Target, direct_target, litellm_target, proxy_target
from .stats import LoadResult

Say = Callable[[str], None]
T = TypeVar("T")
WARM_UP_SECONDS = 1.0
MAX_WARM_UP_SECONDS = 16.0
# The last calls of a load settle (and queue their usage events) just after the load generator has its answers.
SETTLE_SECONDS = 0.3


@dataclass(slots=True)
class Options:
    duration: float = 5.0
    workers: tuple[int, ...] = (1, 2)
    concurrency: tuple[int, ...] = (1, 16, 64)
    servers: tuple[str, ...] = ("uvicorn",)
    tool: str = "wrk"
    pin: bool = True
    litellm: Path | None = None
    streams_open: int = 0
    soak_minutes: float = 0.0
    modes: tuple[Mode, ...] = field(default=(JSON, STREAM))
    enforcement: bool = True  # budgets, rate limits and the plan limit; off measures what they cost
    rate_limits: bool = True  # with enforcement: the key's rate limits too (budget leases never cover them)
    app: str = "proxy"  # proxy: the proxy worker (tokonomics.proxy_asgi); all: the one app serving everything


def _overhead_ms(target: Target) -> float:
    request = urllib.request.Request(target.url, data=JSON.bodies[0], method="POST",
                                     headers={**target.headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()
        return float(answer.headers["x-tokonomics-overhead-ms"])


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(self, *, options: Options, env: BenchEnvironment, base_dir: Path, say: Say) -> None:
        self.options = options
        self.env = env
        self.base_dir = base_dir
        self.say = say
        self.simulator: Server | None = None

    # --- one load -------------------------------------------------------------------------------

    def measure(self, *, target: Target, server: Server | None, mode: Mode, concurrency: int, cores: Cores,
                duration: float | None = None, tool: str | None = None) -> Cell:
        assert self.simulator is not None
        proxy_pids = server.all_pids() if server is not None else []
        simulator_pids = self.simulator.all_pids()
        before = (cpu_seconds(proxy_pids), cpu_seconds(simulator_pids), self.env.redis_cpu_seconds(),
                  _children_cpu_seconds())
        commands = self.env.redis_commands()
        load = run_load(tool=tool or self.options.tool, target=target, mode=mode, concurrency=concurrency,
                        duration=duration or self.options.duration, workdir=self.env.workdir, cpus=cores.load)
        after = (cpu_seconds(proxy_pids), cpu_seconds(simulator_pids), self.env.redis_cpu_seconds(),
                 _children_cpu_seconds())
        commands = self.env.redis_commands() - commands
        per_request = [(a - b) * 1e6 / max(1, load.requests) for a, b in zip(after, before, strict=True)]
        if server is not None:
            time.sleep(SETTLE_SECONDS)
        events = self.env.take_usage_events()
        cell = Cell(
            target=target.name,
            workers=len(server.worker_pids()) if server is not None else 1,
            mode=mode.name,
            concurrency=concurrency,
            cores=cores.describe(),
            load=load,
            proxy_cpu_us=per_request[0] if server is not None else None,
            simulator_cpu_us=per_request[1],
            redis_cpu_us=per_request[2],
            load_cpu_us=per_request[3],
            rss_mb=tuple(rss_bytes(pid) / 2**20 for pid in server.worker_pids()) if server is not None else (),
            usage_events=events if target.name not in ("direct", "litellm") else None,
            redis_commands=commands / max(1, load.requests),
        )
        self.say(cell.line())
        return cell

    def warm_up(self, target: Target, server: Server | None, cores: Cores) -> None:
        for mode in self.options.modes:
            duration = WARM_UP_SECONDS
            while True:
                load = run_load(tool=self.options.tool, target=target, mode=mode,
                                concurrency=max(self.options.concurrency), duration=duration,
                                workdir=self.env.workdir, cpus=cores.load)
                # A slow server (LiteLLM, cold: seconds for its first calls at 64 connections) may answer
                # nothing within a second without failing anything: give it longer.
                if load.requests or load.errors or duration >= MAX_WARM_UP_SECONDS:
                    break
                duration *= 4
            if load.errors >= load.requests:
                log = f"\n{server.log_tail()}" if server is not None else ""
                what = (f"{load.describe_failures()} errors of {load.requests} requests" if load.requests
                        else f"no answer within {duration:g} s")
                raise RuntimeError(f"warm-up against {target.name} failed: {what}{log}")
            if load.errors:
                self.say(f"  warm-up against {target.name}: {load.describe_failures()} of {load.requests} "
                         "requests failed")
        self.env.take_usage_events()

    def matrix(self, target: Target, server: Server | None, cores: Cores) -> list[Cell]:
        self.warm_up(target, server, cores)
        return [
            self.measure(target=target, server=server, mode=mode, concurrency=concurrency, cores=cores)
            for mode in self.options.modes
            for concurrency in self.options.concurrency
        ]

    def first_event(self, target: Target, cores: Cores) -> LoadResult:
        """Time to the first SSE event, one stream at a time (the built-in client sees each chunk; wrk does not)."""
        load = run_load(tool="builtin", target=target, mode=STREAM, concurrency=1,
                        duration=max(2.0, self.options.duration / 2), workdir=self.env.workdir, cpus=cores.load)
        self.env.take_usage_events()
        return load

    def first_call(self, kind: str) -> FirstCall:
        """A fresh one-worker server's first and second calls, one at a time (the cold-start figure)."""
        started = time.monotonic()
        server = start_proxy(kind=kind, app=self.options.app, port=free_port(), workers=1, env=self.env.env,
                             cwd=self.base_dir, workdir=self.env.workdir, cpus=None)
        try:
            ready_s = time.monotonic() - started
            target = proxy_target(kind, server.url)
            first, second = (_overhead_ms(target) for _ in range(2))
        finally:
            server.stop()
        self.env.take_usage_events()
        return FirstCall(target=kind, ready_s=ready_s, first_ms=first, second_ms=second)

    # --- the whole run -------------------------------------------------------------------------

    def run(self) -> Report:
        options = self.options
        workers = options.workers[0]
        cores = Cores.split(proxy_workers=workers, pin=options.pin)
        self.say(f"Cores: {cores.describe()}; load generator: {options.tool}")
        self.simulator = start_simulator(port=free_port(), env=self.env.env, cwd=self.base_dir,
                                         workdir=self.env.workdir, cpus=cores.load)
        report = Report.create(options=options, cores=cores)
        try:
            self.env.prepare(simulator_url=self.simulator.url, enforcement=self.options.enforcement,
                             rate_limits=self.options.rate_limits,
                             web_app=self.options.app == "all")
            direct = direct_target(self.simulator.url)
            self.say("Direct to the simulator:")
            report.cells += self.matrix(direct, None, cores)
            report.first_event["direct"] = self.first_event(direct, cores)
            for kind in options.servers:
                report.first_call[kind] = self.first_call(kind)
                self.say(report.first_call[kind].line())
                self._proxy(report, kind, workers, cores)
            if options.litellm is not None:
                self._litellm(report, workers, cores)
            if len(options.workers) > 1:
                self._scaling(report)
            if options.soak_minutes:
                report.soak = self._with_proxy(workers, cores, lambda server, target: longrun.soak(
                    bench=self, server=server, target=target, cores=cores, minutes=options.soak_minutes))
        finally:
            self.simulator.stop()
        return report

    def _with_proxy(self, workers: int, cores: Cores, action: Callable[[Server, Target], T],
                    kind: str = "uvicorn") -> T:
        server = start_proxy(kind=kind, app=self.options.app, port=free_port(), workers=workers, env=self.env.env,
                             cwd=self.base_dir, workdir=self.env.workdir, cpus=cores.proxy)
        try:
            return action(server, proxy_target(kind, server.url))
        finally:
            server.stop()

    def _proxy(self, report: Report, kind: str, workers: int, cores: Cores) -> None:
        def run(server: Server, target: Target) -> None:
            self.say(f"Through Tokonomics ({kind}, {workers} worker{'s' if workers > 1 else ''}):")
            report.cells += self.matrix(target, server, cores)
            report.first_event[kind] = self.first_event(target, cores)
            if self.options.streams_open and kind == "uvicorn":
                report.streams_open = longrun.streams_open(bench=self, server=server, target=target,
                                                           count=self.options.streams_open)

        self._with_proxy(workers, cores, run, kind=kind)

    def _litellm(self, report: Report, workers: int, cores: Cores) -> None:
        assert self.simulator is not None and self.options.litellm is not None
        executable, config, master_key = litellm_config(self.options.litellm, self.simulator.url, self.env.workdir)
        server = start_litellm(executable=executable, config=config, port=free_port(), workers=workers,
                               env=litellm_environment(), cwd=self.env.workdir, workdir=self.env.workdir,
                               cpus=cores.proxy)
        try:
            self.say(f"Through LiteLLM ({executable}):")
            target = litellm_target(server.url, master_key)
            report.cells += self.matrix(target, server, cores)
            report.first_event["litellm"] = self.first_event(target, cores)
        finally:
            server.stop()

    def _scaling(self, report: Report) -> None:
        """Requests/s against worker count, at the highest concurrency, with no pinning (a worker per core
        needs as many cores as workers, and the load side needs its own)."""
        assert self.simulator is not None
        shared = Cores(None, None)
        simulator_pids = self.simulator.all_pids()
        pinned_to = {pid: os.sched_getaffinity(pid) for pid in simulator_pids}
        for pid in simulator_pids:
            os.sched_setaffinity(pid, os.sched_getaffinity(0))
        concurrency = max(self.options.concurrency)

        def run(server: Server, target: Target) -> Cell:
            self.warm_up(target, server, shared)
            return self.measure(target=target, server=server, mode=JSON, concurrency=concurrency, cores=shared)

        try:
            self.say(f"Scaling (JSON, {concurrency} connections, {shared.describe()}):")
            direct = self.measure(target=direct_target(self.simulator.url), server=None, mode=JSON,
                                  concurrency=concurrency, cores=shared)
            cells = [self._with_proxy(workers, shared, run) for workers in self.options.workers]
        finally:
            for pid, cpus in pinned_to.items():
                os.sched_setaffinity(pid, cpus)
        report.scaling = Scaling(direct=direct, cells=cells)

"""What a run found: the measured cells, the derived figures (added latency, scaling, drift), the
targets of the performance issue, and their rendering as a table and as JSON."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .processes import Cores
from .stats import LoadResult

if TYPE_CHECKING:
    from .runner import Options

MS = 1000.0


@dataclass(slots=True)
class Cell:
    """One load against one target: latency from the load generator, CPU time and memory from /proc."""

    target: str  # direct, uvicorn, daphne or litellm
    workers: int
    mode: str  # json or stream
    concurrency: int
    cores: str
    load: LoadResult
    proxy_cpu_us: float | None  # per request, all proxy processes
    simulator_cpu_us: float
    redis_cpu_us: float  # the whole Redis server, whoever else uses it
    load_cpu_us: float
    rss_mb: tuple[float, ...]  # per worker, after the load
    usage_events: int | None  # queued by the proxy during the load
    # Commands Redis ran per request during the load (INFO commandstats, scripts' own commands included,
    # EVALSHA itself too): the whole server, whoever else uses it. None: not measured.
    redis_commands: float | None = None

    def line(self) -> str:
        latency = self.load.latency
        text = (f"  {self.target:8} {self.mode:6} c={self.concurrency:<3} p50 {latency.p50_us / MS:7.3f} ms  "
                f"p99 {latency.p99_us / MS:7.3f} ms  {self.load.rps:8.0f} req/s")
        if self.proxy_cpu_us is not None:
            text += f"  proxy CPU {self.proxy_cpu_us:5.0f} µs/req  RSS {_mb(self.rss_mb)} MB"
        if self.redis_commands is not None and self.proxy_cpu_us is not None:
            text += f"  Redis {self.redis_commands:5.2f} cmd/req"
        if self.load.errors:
            text += f"  ERRORS {self.load.describe_failures()}"
        return text

    @property
    def usage_recorded(self) -> bool:
        return self.usage_events is None or self.usage_events >= self.load.requests


@dataclass(slots=True)
class FirstCall:
    """A freshly started worker's first two calls: the overhead each reported (x-tokonomics-overhead-ms),
    and how long the worker took to answer /healthz (its warm-up is in that)."""

    target: str
    ready_s: float
    first_ms: float
    second_ms: float

    def fast_enough(self) -> bool:
        return self.first_ms < 5 * self.second_ms + 20  # generous: one call each, on a shared machine

    def line(self) -> str:
        return (f"first call on a fresh worker ({self.target}): overhead {self.first_ms:.3f} ms, the second's "
                f"{self.second_ms:.3f} ms; ready after {self.ready_s:.2f} s")


@dataclass(slots=True)
class Scaling:
    direct: Cell
    cells: list[Cell]

    def ratio(self) -> float | None:
        if len(self.cells) < 2 or not self.cells[0].load.rps:
            return None
        return self.cells[-1].load.rps / self.cells[0].load.rps


@dataclass(slots=True)
class StreamsOpen:
    count: int
    opened: int
    rss_before_mb: list[float]
    rss_open_mb: list[float]
    rss_after_mb: list[float]

    def line(self) -> str:
        return (f"  {self.opened} streams open: RSS per worker {_mb(self.rss_open_mb)} MB "
                f"(before {_mb(self.rss_before_mb)}, after closing {_mb(self.rss_after_mb)})")


@dataclass(slots=True)
class Soak:
    minutes: float
    concurrency: int
    warm_up_s: float
    samples: list[tuple[float, list[float]]]
    load: LoadResult
    proxy_cpu_us: float
    usage_events: int

    def drift_mb_per_10_min(self) -> list[float]:
        """Least-squares slope of each worker's RSS after the warm-up, in MB per 10 minutes."""
        points = [(t, rss) for t, rss in self.samples if t >= self.warm_up_s] or self.samples
        if len(points) < 2:
            return []
        slopes = []
        for worker in range(len(points[0][1])):
            xs = [t for t, _ in points]
            ys = [rss[worker] for _, rss in points if worker < len(rss)]
            if len(ys) != len(xs):
                continue
            mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
            spread = sum((x - mean_x) ** 2 for x in xs)
            slopes.append(sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread * 600
                          if spread else 0.0)
        return slopes

    def line(self) -> str:
        first, last = self.samples[0][1], self.samples[-1][1]
        return (f"  soak {self.minutes:g} min: {self.load.requests} calls, {self.load.rps:.0f} req/s, "
                f"p99 {self.load.latency.p99_us / MS:.2f} ms, errors {self.load.describe_failures()}; "
                f"RSS {_mb(first)} → "
                f"{_mb(last)} MB; drift after warm-up {_mb(self.drift_mb_per_10_min(), signed=True)} MB / 10 min")


@dataclass(slots=True)
class Check:
    name: str
    passed: bool | None  # None: not measured in this run
    measured: str


APPLICATION_NAMES = {"proxy": "proxy workers (tokonomics.proxy_asgi)",
                     "all": "the application serving the web app too (tokonomics.asgi)"}


@dataclass
class Report:
    machine: dict[str, str]
    settings: dict[str, Any]
    cores: str
    cells: list[Cell] = field(default_factory=list)
    first_event: dict[str, LoadResult] = field(default_factory=dict)
    first_call: dict[str, FirstCall] = field(default_factory=dict)
    streams_open: StreamsOpen | None = None
    scaling: Scaling | None = None
    soak: Soak | None = None

    @classmethod
    def create(cls, *, options: Options, cores: Cores) -> Report:
        settings = {
            "duration_s": options.duration, "workers": list(options.workers),
            "concurrency": list(options.concurrency), "servers": list(options.servers), "load_generator": options.tool,
            "streams_open": options.streams_open, "soak_minutes": options.soak_minutes,
            "litellm": str(options.litellm) if options.litellm else None,
            "application": options.app, "enforcement": options.enforcement, "rate_limits": options.rate_limits,
        }
        return cls(machine=machine_info(options.tool), settings=settings, cores=cores.describe())

    # --- derived figures ------------------------------------------------------------------------

    def cell(self, target: str, mode: str, concurrency: int) -> Cell | None:
        return next((c for c in self.cells
                     if c.target == target and c.mode == mode and c.concurrency == concurrency), None)

    def added_ms(self, target: str, mode: str, concurrency: int) -> tuple[float, float] | None:
        through, direct = self.cell(target, mode, concurrency), self.cell("direct", mode, concurrency)
        if through is None or direct is None:
            return None
        return ((through.load.latency.p50_us - direct.load.latency.p50_us) / MS,
                (through.load.latency.p99_us - direct.load.latency.p99_us) / MS)

    def first_event_added_ms(self, target: str) -> tuple[float, float] | None:
        through, direct = self.first_event.get(target), self.first_event.get("direct")
        if through is None or direct is None or through.first_event is None or direct.first_event is None:
            return None
        return ((through.first_event.p50_us - direct.first_event.p50_us) / MS,
                (through.first_event.p99_us - direct.first_event.p99_us) / MS)

    def checks(self) -> list[Check]:
        """The targets of the performance issue, for the production server (uvicorn)."""
        checks = []
        for mode in ("json", "stream"):
            added = self.added_ms("uvicorn", mode, 1)
            checks.append(Check(f"added p50 at 1 connection ≤ 0.5 ms ({mode})",
                                None if added is None else added[0] <= 0.5, _ms(added, 0)))
            checks.append(Check(f"added p99 at 1 connection ≤ 1 ms ({mode})",
                                None if added is None else added[1] <= 1.0, _ms(added, 1)))
        cpu = [c for c in self.cells if c.target == "uvicorn" and c.proxy_cpu_us is not None]
        worst = max(cpu, key=lambda c: c.proxy_cpu_us or 0.0, default=None)
        checks.append(Check("proxy CPU ≤ 400 µs per request (every load)",
                            None if worst is None else (worst.proxy_cpu_us or 0.0) <= 400,
                            "-" if worst is None else
                            f"worst {worst.proxy_cpu_us:.0f} µs ({worst.mode}, c={worst.concurrency}); " +
                            ", ".join(f"{c.mode} c={c.concurrency}: {c.proxy_cpu_us:.0f}" for c in cpu)))
        first = self.first_event_added_ms("uvicorn")
        checks.append(Check("first streamed event delayed ≤ 1 ms (p50)", None if first is None else first[0] <= 1.0,
                            "-" if first is None else f"p50 {first[0]:+.3f} ms, p99 {first[1]:+.3f} ms"))
        cold = self.first_call.get("uvicorn")
        checks.append(Check("a fresh worker's first call costs < 5× its second + 20 ms",
                            None if cold is None else cold.fast_enough(),
                            "-" if cold is None else f"{cold.first_ms:.3f} ms, then {cold.second_ms:.3f} ms"))
        opened = self.streams_open
        checks.append(Check(f"≤ 100 MB RSS per worker with {opened.count if opened else 256} streams open",
                            None if opened is None else max(opened.rss_open_mb) <= 100,
                            "-" if opened is None else f"{_mb(opened.rss_open_mb)} MB"))
        drift = self.soak.drift_mb_per_10_min() if self.soak else []
        checks.append(Check("RSS flat over the soak (drift ≤ 1 MB / 10 min after warm-up)",
                            None if not drift else max(abs(d) for d in drift) <= 1.0,
                            "-" if not self.soak else
                            f"{_mb(drift, signed=True)} MB / 10 min over {self.soak.minutes:g} min"))
        ratio = self.scaling.ratio() if self.scaling else None
        checks.append(Check("2 workers ≥ 1.7× one worker's requests/s", None if ratio is None else ratio >= 1.7,
                            "-" if ratio is None or self.scaling is None else
                            f"{ratio:.2f}× ({' → '.join(f'{c.load.rps:.0f}' for c in self.scaling.cells)} req/s; "
                            f"direct to the simulator: {self.scaling.direct.load.rps:.0f} req/s)"))
        checks.append(Check("usage recorded for every proxied call",
                            all(c.usage_recorded for c in self.cells),
                            ", ".join(f"{c.mode} c={c.concurrency}: {c.usage_events}/{c.load.requests}"
                                      for c in self.cells if c.usage_events is not None)))
        return checks

    # --- rendering --------------------------------------------------------------------------------

    def table(self) -> str:
        out = [f"Tokonomics benchmark — {self.machine['cpu']}, {self.machine['cores']} cores; "
               f"load generator {self.settings['load_generator']}; {self.settings['duration_s']:g} s per load",
               f"Cores: {self.cores}; idle: {self.machine.get('cpuidle', 'unknown')}",
               f"Application: {APPLICATION_NAMES.get(self.settings.get('application', 'all'), '?')}; budgets and plan "
               f"limit {'on' if self.settings.get('enforcement', True) else 'off'}; key rate limits "
               f"{'on' if self.settings.get('enforcement', True) and self.settings.get('rate_limits', True) else 'off'}"
               "; usage recording on",
               ""]
        for target in dict.fromkeys(c.target for c in self.cells if c.target != "direct"):
            workers = next(c.workers for c in self.cells if c.target == target)
            out.append(f"{target} ({workers} worker{'s' if workers > 1 else ''}) vs direct to the simulator")
            out.append(f"{'mode':6} {'conn':>4} | {'direct p50':>10} {'p99':>7} | {'proxied p50':>11} {'p99':>7} | "
                       f"{'added p50':>9} {'p99':>7} | {'direct r/s':>10} {'proxied r/s':>11} | {'CPU µs/req':>10} "
                       f"{'Redis µs':>8} | {'RSS MB':>10} | errors")
            for cell in (c for c in self.cells if c.target == target):
                direct = self.cell("direct", cell.mode, cell.concurrency)
                added = self.added_ms(target, cell.mode, cell.concurrency)
                if direct is None or added is None:
                    continue
                out.append(
                    f"{cell.mode:6} {cell.concurrency:>4} | {direct.load.latency.p50_us / MS:10.3f} "
                    f"{direct.load.latency.p99_us / MS:7.3f} | {cell.load.latency.p50_us / MS:11.3f} "
                    f"{cell.load.latency.p99_us / MS:7.3f} | {added[0]:+9.3f} {added[1]:+7.3f} | "
                    f"{direct.load.rps:10.0f} {cell.load.rps:11.0f} | {_number(cell.proxy_cpu_us):>10} "
                    f"{cell.redis_cpu_us:8.0f} | {_mb(cell.rss_mb):>10} | {cell.load.errors + direct.load.errors}")
            first = self.first_event_added_ms(target)
            if first is not None:
                through, direct_first = self.first_event[target].first_event, self.first_event["direct"].first_event
                assert through is not None and direct_first is not None
                out.append(f"first streamed event: direct p50 {direct_first.p50_us / MS:.3f} ms, proxied p50 "
                           f"{through.p50_us / MS:.3f} ms → added p50 {first[0]:+.3f} ms, p99 {first[1]:+.3f} ms")
            if target in self.first_call:
                out.append(self.first_call[target].line())
            out.append("")
        if self.streams_open:
            out += ["Streams held open (uvicorn):", self.streams_open.line(), ""]
        if self.scaling:
            out.append(f"Scaling (JSON, {self.scaling.direct.concurrency} connections, unpinned):")
            out.append(self.scaling.direct.line())
            out += [cell.line() for cell in self.scaling.cells]
            out.append("")
        if self.soak:
            out += ["Soak:", self.soak.line(), ""]
        out.append("Targets:")
        for check in self.checks():
            mark = {True: "PASS", False: "MISS", None: "n/a "}[check.passed]
            out.append(f"  [{mark}] {check.name}: {check.measured}")
        return "\n".join(out)

    def as_json(self) -> dict[str, Any]:
        data = {
            "machine": self.machine,
            "settings": self.settings,
            "cores": self.cores,
            "cells": [_plain(c) | {"rps": c.load.rps} for c in self.cells],
            "added_ms": [
                {"target": c.target, "mode": c.mode, "concurrency": c.concurrency,
                 "p50": added[0], "p99": added[1]}
                for c in self.cells if c.target != "direct"
                and (added := self.added_ms(c.target, c.mode, c.concurrency)) is not None
            ],
            "first_event": {name: _plain(load) for name, load in self.first_event.items()},
            "first_event_added_ms": {name: self.first_event_added_ms(name) for name in self.first_event
                                     if name != "direct"},
            "first_call": {name: _plain(cold) for name, cold in self.first_call.items()},
            "streams_open": _plain(self.streams_open) if self.streams_open else None,
            "scaling": _plain(self.scaling) | {"ratio": self.scaling.ratio()} if self.scaling else None,
            "soak": _plain(self.soak) | {"drift_mb_per_10_min": self.soak.drift_mb_per_10_min()} if self.soak else None,
            "targets": [_plain(check) for check in self.checks()],
        }
        return data


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value)


def _ms(pair: tuple[float, float] | None, index: int) -> str:
    return "-" if pair is None else f"{pair[index]:+.3f} ms"


def _mb(values: list[float] | tuple[float, ...], *, signed: bool = False) -> str:
    return "/".join(f"{v:+.1f}" if signed else f"{v:.1f}" for v in values) or "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def machine_info(tool: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": str(len(os.sched_getaffinity(0))), "kernel": platform.release(),
            "python": platform.python_version()}
    for package in ("uvicorn", "uvloop", "httptools", "aiohttp", "redis", "hiredis", "orjson", "daphne", "Django"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = "absent"
    if tool == "wrk":
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        info["wrk"] = (done.stdout or done.stderr).split(" [")[0].removeprefix("wrk ").strip()
    base = Path(__file__).resolve().parents[2]
    done = subprocess.run(["git", "-C", str(base), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(base), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    info["commit"] = done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    info["cpuidle"] = cpuidle_description()
    return info


def cpuidle_description() -> str:
    """How the cores idle. In a VM whose guest halt-polling is off every idle core halts and waking it
    costs a VM exit: a large share of the 1-connection figures (docs/performance.md)."""
    root = Path("/sys/devices/system/cpu/cpuidle")
    try:
        driver = (root / "current_driver").read_text().strip()
    except OSError:
        return "unknown"
    if driver != "haltpoll":
        return driver
    try:
        poll_ns = int(Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns").read_text())
    except (OSError, ValueError):
        return "haltpoll"
    return f"haltpoll, guest halt-polling {'off' if poll_ns == 0 else f'up to {poll_ns // 1000} µs'}"

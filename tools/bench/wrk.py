"""wrk: the command line (with post.lua for bodies and headers) and the reading of its output."""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson

from .scenarios import Mode, Target
from .stats import LatencySummary, LoadResult

SCRIPT = Path(__file__).with_name("post.lua")
_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0}
_DISTRIBUTION = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def command(*, target: Target, mode: Mode, concurrency: int, duration: float,
            workdir: Path) -> tuple[list[str], dict[str, str]]:
    paths = []
    for index, body in enumerate(mode.bodies):
        path = workdir / f"body-{mode.name}-{index}.json"
        path.write_bytes(body)
        paths.append(str(path))
    env = {
        **os.environ,
        "BENCH_BODIES": ";".join(paths),
        "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in target.headers.items()),
    }
    seconds = max(1, round(duration))
    return ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "30s", "--latency",
            "-s", str(SCRIPT), target.url], env


def _micros(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse(output: str) -> LoadResult:
    """wrk's --latency report; the exact figures of post.lua's JSON line when it is there."""
    distribution = {int(p): _micros(v, u) for p, v, u in _DISTRIBUTION.findall(output)}
    total = _TOTAL.search(output)
    if total is None or 50 not in distribution:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    requests, elapsed = int(total.group(1)), _micros(total.group(2), total.group(3)) / 1e6
    non_2xx = int(m.group(1)) if (m := _NON_2XX.search(output)) else 0
    socket_errors = sum(int(n) for n in m.groups()) if (m := _SOCKET_ERRORS.search(output)) else 0
    latency = LatencySummary(p50_us=distribution[50], p90_us=distribution.get(90, 0.0),
                             p99_us=distribution.get(99, 0.0), max_us=0.0, mean_us=0.0)
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data = orjson.loads(line.removeprefix("BENCH_JSON "))
            elapsed = data["duration_us"] / 1e6
            latency = LatencySummary.from_dict(data)
            break
    failures = {kind: count for kind, count in (("non-2xx", non_2xx), ("socket", socket_errors)) if count}
    return LoadResult(tool="wrk", requests=requests, elapsed_s=elapsed, errors=non_2xx + socket_errors,
                      latency=latency, failures=failures)

"""Running one load: wrk when it is installed, else the built-in generator; both give a LoadResult."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from . import wrk
from .processes import pinned
from .scenarios import Mode, Target
from .stats import LatencySummary, LoadResult


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


class LoadRun:
    """One load in progress (a subprocess), so that the caller can sample the servers meanwhile."""

    def __init__(self, *, tool: str, target: Target, mode: Mode, concurrency: int, duration: float,
                 workdir: Path, cpus: frozenset[int] | None) -> None:
        self.tool = tool
        self.workdir = workdir
        if tool == "wrk":
            command, env = wrk.command(target=target, mode=mode, concurrency=concurrency, duration=duration,
                                       workdir=workdir)
        else:
            spec = workdir / "loadgen.json"
            spec.write_bytes(orjson.dumps({
                "url": target.url, "headers": target.headers, "bodies": [b.decode() for b in mode.bodies],
                "concurrency": concurrency, "duration": duration, "mode": "load",
            }))
            command, env = [sys.executable, "-m", "tools.bench.loadgen", str(spec)], dict(os.environ)
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True, preexec_fn=pinned(cpus),
                                        cwd=Path(__file__).resolve().parents[2])

    def result(self, timeout: float) -> LoadResult:
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise RuntimeError(f"the load generator ({self.tool}) did not finish within {timeout:.0f} s") from None
        if self.process.returncode:
            raise RuntimeError(f"the load generator ({self.tool}) failed:\n{out}{err}")
        if self.tool == "wrk":
            return wrk.parse(out)
        data = orjson.loads(out.strip().splitlines()[-1])
        failures = {**data["errors"], **{s: n for s, n in data["statuses"].items() if int(s) >= 400}}
        return LoadResult(
            tool="builtin",
            requests=data["requests"],
            elapsed_s=data["elapsed_s"],
            errors=sum(failures.values()),
            failures=failures,
            latency=LatencySummary.from_dict(data["latency"]),
            first_event=LatencySummary.from_dict(data["first_event"]) if data.get("first_event") else None,
        )


def run_load(*, tool: str, target: Target, mode: Mode, concurrency: int, duration: float, workdir: Path,
             cpus: frozenset[int] | None) -> LoadResult:
    run = LoadRun(tool=tool, target=target, mode=mode, concurrency=concurrency, duration=duration,
                  workdir=workdir, cpus=cpus)
    return run.result(timeout=duration + 60)

"""The processes of a run: starting them (pinned to their cores), and reading their CPU time and
memory from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(slots=True, frozen=True)
class Cores:
    """Which CPUs the load side (load generator and simulator) and the proxy may use; None = any."""

    load: frozenset[int] | None
    proxy: frozenset[int] | None

    @classmethod
    def split(cls, *, proxy_workers: int, pin: bool = True) -> Cores:
        available = sorted(os.sched_getaffinity(0))
        if not pin or len(available) < 2:
            return cls(None, None)
        # The proxy gets one core per worker when it can; the load side keeps at least one.
        proxy_count = min(proxy_workers, len(available) - 1)
        if proxy_count < proxy_workers:
            return cls(None, None)  # sharing is unavoidable: let the scheduler do it
        return cls(frozenset(available[:-proxy_count]), frozenset(available[-proxy_count:]))

    def describe(self) -> str:
        if self.proxy is None:
            return "unpinned (all processes share every core)"
        return f"proxy on CPU {_cpus(self.proxy)}, load generator and simulator on CPU {_cpus(self.load)}"


def _cpus(cpus: frozenset[int] | None) -> str:
    return "any" if cpus is None else ",".join(str(c) for c in sorted(cpus))


def pinned(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def read_stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may hold spaces: split after its closing one.
    return raw[raw.rindex(")") + 2:].split()


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of the processes (all their threads); a process gone counts 0."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = read_stat(pid)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except OSError:
        return 0


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in task.read_text().split()]
                found += kids
                todo += kids
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Server:
    name: str
    url: str
    processes: list[subprocess.Popen[bytes]]
    log: Path
    workers_expected: int = 1
    _workers: list[int] = field(default_factory=list)

    def all_pids(self) -> list[int]:
        roots = [p.pid for p in self.processes]
        return roots + [pid for root in roots for pid in descendants(root)]

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: a supervisor's children (not multiprocessing's helpers),
        else the processes started."""
        if self._workers and all(Path(f"/proc/{pid}").exists() for pid in self._workers):
            return self._workers
        roots = [p.pid for p in self.processes]
        children = [pid for root in roots for pid in descendants(root)
                    if "resource_tracker" not in command_line(pid)]
        self._workers = children if len(children) >= self.workers_expected and len(roots) == 1 else roots
        return self._workers

    def wait_workers(self, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < self.workers_expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {self.workers_expected} workers did not start\n{self.log_tail()}")
            self._workers = []
            time.sleep(0.1)
        return self.worker_pids()

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {process.returncode}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers: that is all this waits for
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} did not answer within {timeout:.0f} s\n{self.log_tail()}") from None
                time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _spawn(command: list[str], *, env: dict[str, str], cwd: Path, log: Path, cpus: frozenset[int] | None,
           pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=pinned(cpus), pass_fds=pass_fds)


def start_simulator(*, port: int, env: dict[str, str], cwd: Path, workdir: Path,
                    cpus: frozenset[int] | None, chunk_delay_ms: float = 0) -> Server:
    log = workdir / "simulator.log"
    command = [sys.executable, "-m", "proxy.simulator", "--host", "127.0.0.1", "--port", str(port)]
    if chunk_delay_ms:
        command += ["--chunk-delay-ms", str(chunk_delay_ms)]
    server = Server("simulator", f"http://127.0.0.1:{port}", [_spawn(command, env=env, cwd=cwd, log=log, cpus=cpus)],
                    log)
    server.wait_ready("/_sim/health")
    return server


ASGI_APPLICATIONS = {"proxy": "tokonomics.proxy_asgi:application", "all": "tokonomics.asgi:application"}


def start_proxy(*, kind: str, app: str, port: int, workers: int, env: dict[str, str], cwd: Path, workdir: Path,
                cpus: frozenset[int] | None) -> Server:
    """Tokonomics as production runs it: uvicorn (uvloop, httptools) with N workers; or N Daphne
    processes sharing one listening socket, for comparison. `app` picks the proxy worker's application
    or the one that serves the web app too."""
    log = workdir / f"{kind}-{workers}.log"
    url = f"http://127.0.0.1:{port}"
    application = ASGI_APPLICATIONS[app]
    if kind == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", application, "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
                   "--no-access-log", "--log-level", "warning", "--backlog", "2048"]
        server = Server(kind, url, [_spawn(command, env=env, cwd=cwd, log=log, cpus=cpus)], log, workers)
    elif kind == "daphne":
        listener = socket.create_server(("127.0.0.1", port), backlog=2048)
        try:
            fd = listener.fileno()
            command = [sys.executable, "-m", "daphne", "--fd", str(fd), "-v", "0", application]
            processes = [_spawn(command, env=env, cwd=cwd, log=log, cpus=cpus, pass_fds=[fd]) for _ in range(workers)]
        finally:
            listener.close()  # the children hold it now
        server = Server(kind, url, processes, log, workers)
    else:
        raise ValueError(f"unknown server {kind!r}")
    server.wait_ready("/healthz")
    server.wait_workers()
    return server


def start_litellm(*, executable: Path, config: Path, port: int, workers: int, env: dict[str, str], cwd: Path,
                  workdir: Path, cpus: frozenset[int] | None) -> Server:
    log = workdir / "litellm.log"
    command = [str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", str(workers)]
    server = Server("litellm", f"http://127.0.0.1:{port}", [_spawn(command, env=env, cwd=cwd, log=log, cpus=cpus)],
                    log, workers)
    server.wait_ready("/health/liveliness", timeout=120)
    return server

"""Proxy tests share the live stack of tests/conftest.py, and a private Redis for the tests that break it."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from ..conftest import KEY, OTHER_KEY, REPO, ProxyProcess, Stack
from ..private_redis import private_redis

__all__ = ["KEY", "OTHER_KEY", "ProxyProcess", "RunserverProcess", "Stack", "private_redis"]


class RunserverProcess(ProxyProcess):
    """`manage.py runserver`, the development server (Daphne), serving everything on this test's database
    and Redis: the proxy's stream and fault behaviour is tested under it as under uvicorn."""

    def __init__(self, **env: str) -> None:
        super().__init__(app="tokonomics.asgi:application", TOKONOMICS_DAPHNE="1", SECURE_SSL_REDIRECT="0", **env)

    def __enter__(self) -> RunserverProcess:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.__exit__()
                raise RuntimeError("manage.py runserver did not start")
            time.sleep(0.1)

"""Proxy tests share the live stack of tests/conftest.py, and a private Redis for the tests that break it."""

from __future__ import annotations

import sys

from ..conftest import KEY, OTHER_KEY, ProxyProcess, Stack
from ..private_redis import private_redis

__all__ = ["KEY", "OTHER_KEY", "ProxyProcess", "RunserverProcess", "Stack", "private_redis"]


class RunserverProcess(ProxyProcess):
    """`manage.py runserver`, the development server (Daphne), serving everything on this test's database
    and Redis: the proxy's stream and fault behaviour is tested under it as under uvicorn."""

    quiet = True

    def __init__(self, app: str = "tokonomics.asgi:application", **env: str) -> None:
        super().__init__(app=app, **{"TOKONOMICS_DAPHNE": "1", "SECURE_SSL_REDIRECT": "0", **env})

    def command(self) -> list[str]:
        return [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]

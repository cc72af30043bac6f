"""Proxy tests share the live stack of tests/conftest.py, and a private Redis for the tests that break it."""

from ..conftest import KEY, OTHER_KEY, ProxyProcess, Stack
from ..private_redis import private_redis

__all__ = ["KEY", "OTHER_KEY", "ProxyProcess", "Stack", "private_redis"]

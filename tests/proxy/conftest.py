"""Proxy tests share the live stack of tests/conftest.py."""

from ..conftest import KEY, OTHER_KEY, Stack

__all__ = ["KEY", "OTHER_KEY", "Stack"]

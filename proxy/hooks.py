"""What the proxy needs from the layers above it, handed to it at startup.

The proxy is the bottom layer: it imports neither billing nor alerts. Three things it needs are theirs
(an account as the directory caches it, rebuilding budget counters from usage records, writing usage
events to the database when Redis cannot take them), so billing installs them from its
AppConfig.ready(), which runs in every process that serves the proxy (web app, proxy worker, tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from .directory import AccountEntry


class CountersRebuild(Protocol):
    def __call__(self, *, account_id: int, fingerprint: str) -> object: ...


class UsageEventsWrite(Protocol):
    def __call__(self, *, events: list[bytes]) -> object: ...


@dataclass(frozen=True)
class ProxyHooks:
    account_load: Callable[[int], AccountEntry | None]  # sync, run off the event loop
    counters_rebuild: CountersRebuild  # sync, run off the event loop
    usage_events_write: UsageEventsWrite  # sync, run off the event loop


_hooks: ProxyHooks | None = None


def hooks_install(hooks: ProxyHooks) -> None:
    global _hooks
    _hooks = hooks


def hooks_get() -> ProxyHooks:
    if _hooks is None:
        raise ImproperlyConfigured("the proxy's hooks are not installed: is 'billing' in INSTALLED_APPS?")
    return _hooks

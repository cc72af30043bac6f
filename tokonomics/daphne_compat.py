"""Daphne, the development server (`manage.py runserver`), made to end responses as uvicorn does.

The proxy must behave alike under both servers (CONTRACT §1); Daphne 4.2 differs:

- An application that raises after `http.response.start` must have its connection closed (the proxy
  raises when a provider cuts a stream, so that the client sees the cut). Daphne's `handle_exception`
  starts a 500 response instead, which raises inside its application checker: the client then waits
  forever, and the checker, which reaps every finished application, never runs again.
"""

from __future__ import annotations

import sys
from typing import Any


def daphne_compat_install() -> None:
    """Patch Daphne's request class, once, in a process Daphne serves; elsewhere do nothing (and import
    nothing: Twisted would cost a uvicorn worker ~20 MB)."""
    module = sys.modules.get("daphne.http_protocol")
    request_class = getattr(module, "WebRequest", None)
    if request_class is None or getattr(request_class, "tokonomics_compat", False):
        return
    handle_exception = request_class.handle_exception

    def close_if_started(self: Any, exception: BaseException) -> None:
        if getattr(self, "_response_started", False):
            # Flushes what was written, then closes: no terminating chunk, so the client sees a cut stream.
            self.loseConnection()
            return
        handle_exception(self, exception)

    request_class.handle_exception = close_if_started
    request_class.tokonomics_compat = True

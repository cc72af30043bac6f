"""Daphne, the development server (`manage.py runserver`), made to end responses as uvicorn does.

The proxy must behave alike under both servers (CONTRACT §1); Daphne 4.2 differs in two ways:

- An application that raises after `http.response.start` must have its connection closed (the proxy
  raises when a provider cuts a stream, so that the client sees the cut). Daphne's `handle_exception`
  starts a 500 response instead, which raises inside its application checker: the client then waits
  forever, and the checker, which reaps every finished application, never runs again.
- uvicorn adds its own Date and Server to every response; Daphne adds Server only, so responses the
  proxy made itself had no Date. The proxy drops the provider's two, so each server sends one of each.
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
    from twisted.web.http import datetimeToString

    handle_exception = request_class.handle_exception
    handle_reply = request_class.handle_reply

    def close_if_started(self: Any, exception: BaseException) -> None:
        if getattr(self, "_response_started", False):
            # Flushes what was written, then closes: no terminating chunk, so the client sees a cut stream.
            self.loseConnection()
            return
        handle_exception(self, exception)

    def reply_with_date(self: Any, message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.start":
            headers = list(message.get("headers", ()))
            if not any(bytes(name).lower() == b"date" for name, _ in headers):
                date = datetimeToString()  # type: ignore[no-untyped-call]  # Twisted leaves it untyped
                message = {**message, "headers": [*headers, (b"date", date)]}
        handle_reply(self, message)

    request_class.handle_exception = close_if_started
    request_class.handle_reply = reply_with_date
    request_class.tokonomics_compat = True

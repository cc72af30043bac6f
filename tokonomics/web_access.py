"""One access line per web-app request when LOG_FORMAT=json (logger `web.access`): a request id, the
account's slug, the person's id, method, status and latency. The request id is made here and sent back as
`X-Request-ID`, so a person can quote it. The path logged is the URL's pattern (`a/<slug:slug>/keys/`), never
the URL itself: a password-reset token or a key pasted into an address must not reach a log."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

log = logging.getLogger("web.access")


Handler = Callable[[HttpRequest], HttpResponseBase]


def web_access_log(get_response: Handler) -> Handler:
    def middleware(request: HttpRequest) -> HttpResponseBase:
        if not log.isEnabledFor(logging.INFO):
            return get_response(request)
        started = time.perf_counter()
        request_id = "web_" + secrets.token_hex(8)
        response = get_response(request)
        response["X-Request-ID"] = request_id
        match = request.resolver_match
        user = getattr(request, "user", None)
        log.info(
            "%s %s %s", request.method, match.route if match else "-", response.status_code,
            extra={
                "request_id": request_id, "status": response.status_code, "method": request.method,
                "path": match.route if match else "", "account_slug": match.kwargs.get("slug", "") if match else "",
                "user_id": user.pk if user is not None and user.is_authenticated else None,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response

    return middleware

"""The proxy's own failures. Steps raise them; only the ASGI entry turns them into responses."""

from __future__ import annotations


class ProxyError(Exception):
    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str | None = None,
        denied_scope: str = "",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code
        self.denied_scope = denied_scope
        self.headers = headers or []

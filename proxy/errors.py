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


CONTENT_POLICY_VIOLATION = "content_policy_violation"


def content_policy_error(*, rule_id: str, scope: str) -> ProxyError:
    """A guardrail refused the call (proxy/guardrail_step.py): 400 in the caller's format, naming the rule by its
    id (an admin's slug) and never the text that matched."""
    where = "request" if scope == "input" else "response"
    return ProxyError(400, "invalid_request_error",
                      f"The {where} was blocked by guardrail rule {rule_id!r} of this key's policy.",
                      code=CONTENT_POLICY_VIOLATION, headers=[(b"x-tokonomics-guardrail", rule_id.encode())])

"""An upstream's error, in the client's format: the body an SDK raises its usual exception from, and a
status it maps to the same exception class.

Types follow the status, as both SDKs do (400 bad request, 401 authentication, 403 permission, 404 not
found, 413 too large, 429 rate limit, 5xx server / overloaded); the message is the upstream's own.
Anthropic's 529 (overloaded) becomes 503 for an OpenAI client, the status OpenAI answers when it is.
"""

from __future__ import annotations

from typing import Any

from proxy.providers.base import decode_json_object

from .base import as_dict, dumps

ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
OPENAI_TYPES = {
    "api_error": "server_error",
    "overloaded_error": "server_error",
    "timeout_error": "timeout",
    "rate_limit_error": "requests",
    "billing_error": "insufficient_quota",
}
OPENAI_CODES = {"rate_limit_error": "rate_limit_exceeded", "authentication_error": "invalid_api_key",
                "billing_error": "insufficient_quota"}
OVERLOADED = 529


def _message(error: dict[str, Any], fallback: str) -> str:
    message = error.get("message")
    return message if isinstance(message, str) and message else fallback


def anthropic_error_fields(payload: dict[str, Any]) -> tuple[str, str]:
    """(type, message) of an Anthropic error body or `error` event."""
    error = as_dict(payload.get("error"))
    kind = error.get("type")
    return (kind if isinstance(kind, str) and kind else "api_error"), _message(error, "The provider failed.")


def openai_error_fields(payload: dict[str, Any], status: int) -> tuple[str, str]:
    """(Anthropic type, message) of an OpenAI error body or mid-stream error: the type by status."""
    error = as_dict(payload.get("error"))
    kind = ANTHROPIC_TYPES.get(status) or ("api_error" if status >= 500 or status == 0 else "invalid_request_error")
    return kind, _message(error, "The provider failed.")


def openai_error_payload(*, error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": OPENAI_TYPES.get(error_type, error_type), "param": None,
                      "code": OPENAI_CODES.get(error_type)}}


def anthropic_error_payload(*, error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def error_to_openai(status: int, body: bytes) -> tuple[int, bytes]:
    """An Anthropic error answer, as an OpenAI one."""
    payload = decode_json_object(body) or {}
    error_type, message = anthropic_error_fields(payload)
    if not payload.get("error"):
        error_type = ANTHROPIC_TYPES.get(status, "api_error")
        message = f"The provider answered {status}."
    return (503 if status == OVERLOADED else status), dumps(openai_error_payload(error_type=error_type,
                                                                                  message=message))


def error_to_anthropic(status: int, body: bytes) -> tuple[int, bytes]:
    """An OpenAI error answer, as an Anthropic one."""
    payload = decode_json_object(body) or {}
    error_type, message = openai_error_fields(payload, status)
    if not payload.get("error"):
        message = f"The provider answered {status}."
    return status, dumps(anthropic_error_payload(error_type=error_type, message=message))

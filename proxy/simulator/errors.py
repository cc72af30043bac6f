"""Error responses in each provider's own shape and wording, so the SDKs raise their usual exceptions."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from functools import lru_cache

import orjson
from aiohttp import web

JSON = "application/json"


class Wire(Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"


# status → (error.type, error.code, message), as api.openai.com words them.
OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided: sk-sim***. You can find your API key at "
          "https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
OPENAI_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
    "if you're accessing the API from your browser and are prompted for a username. You can obtain an "
    "API key from https://platform.openai.com/account/api-keys."
)

# status → (error.type, message), as api.anthropic.com words them.
ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}
ANTHROPIC_MISSING_KEY = "x-api-key header is required"

# status → (google.rpc status, message), as generativelanguage.googleapis.com words them.
GEMINI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                      "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
GEMINI_MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or "
    "other form of API consumer identity to call this API."
)


@lru_cache(maxsize=128)
def error_body(
    wire: Wire, status: int, message: str | None = None, *, param: str | None = None, code: str | None = None
) -> bytes:
    """The body of an error; without a `message`, the provider's usual one for that status (and its code)."""
    if wire is Wire.GEMINI:
        status_name, default_message = GEMINI_ERRORS.get(status, ("UNKNOWN", "Simulated error."))
        return orjson.dumps({"error": {"code": status, "message": message or default_message, "status": status_name}})
    if wire is Wire.ANTHROPIC:
        error_type, default_message = ANTHROPIC_ERRORS.get(
            status, ("invalid_request_error" if status < 500 else "api_error", "Simulated error.")
        )
        return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message or default_message}})
    error_type, default_code, default_message = OPENAI_ERRORS.get(
        status, ("invalid_request_error" if status < 500 else "server_error", None, "Simulated error.")
    )
    if message is None:
        message, code = default_message, default_code
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})


def error_response(
    wire: Wire, status: int, message: str | None = None, *, param: str | None = None, code: str | None = None
) -> web.Response:
    return web.Response(status=status, body=error_body(wire, status, message, param=param, code=code),
                        content_type=JSON)


def missing_key_response(wire: Wire) -> web.Response:
    if wire is Wire.GEMINI:
        return error_response(wire, 403, GEMINI_MISSING_KEY)  # Google answers a missing key with 403
    message = ANTHROPIC_MISSING_KEY if wire is Wire.ANTHROPIC else OPENAI_MISSING_KEY
    return error_response(wire, 401, message)


def is_authenticated(wire: Wire, headers: Mapping[str, str], *, azure: bool = False) -> bool:
    """Any credential will do, in a header the provider reads: OpenAI `Authorization: Bearer`,
    Anthropic `x-api-key` or (as recent SDKs send API keys) `Authorization: Bearer`, Gemini `x-goog-api-key`
    (a `?key=` query parameter is read by the Gemini handler itself), Azure `api-key`."""
    if azure:
        return bool(headers.get("api-key"))
    if wire is Wire.ANTHROPIC and headers.get("x-api-key"):
        return True
    if wire is Wire.GEMINI and headers.get("x-goog-api-key"):
        return True
    authorization = headers.get("Authorization", "")
    return authorization.startswith("Bearer ") and len(authorization) > 7

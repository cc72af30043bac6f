"""Headers on both sides of the proxy: what a call's headers say (its key, its attribution, its error
format), what of them goes on to the provider, and what of the provider's comes back."""

from __future__ import annotations

from decimal import Decimal

import aiohttp

from .catalog import BUILTIN_PROVIDERS
from .directory import EndpointEntry
from .providers import WIRE_FORMATS
from .providers.base import WireFormat
from .usage_bounds import TEXT_LIMITS, tags_clean, text_clean

Headers = dict[bytes, bytes]

HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"host", b"content-length",
    }
)
# Our own headers, and the caller's Tokonomics key, never reach the provider.
CONSUMED_HEADERS = frozenset(
    {
        b"authorization", b"x-api-key", b"api-key", b"x-feature-name", b"x-tenant-id", b"x-environment",
        b"x-tokonomics-tags", b"accept-encoding",
    }
)
# The provider's Date and Server are dropped, as nginx does: the ASGI server sends its own on every response
# (uvicorn always does, and cannot be told not to from the app; Daphne via tokonomics/daphne_compat.py), so
# keeping the provider's made two of each.
RESPONSE_DROPPED = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"upgrade", b"trailer", b"te",
     b"date", b"server"}
)


def wire_for_errors(provider: str, headers: Headers) -> WireFormat:
    """The error format of a call not yet matched to an endpoint: its built-in provider's, else guessed."""
    builtin = BUILTIN_PROVIDERS.get(provider)
    if builtin is not None:
        return WIRE_FORMATS[builtin.wire_format]
    if b"anthropic-version" in headers:
        return WIRE_FORMATS["anthropic"]
    return WIRE_FORMATS["openai"]


def presented_key(headers: Headers) -> str:
    """The Tokonomics key the caller sent: a Bearer token, else x-api-key (Anthropic's SDK), else api-key
    (AzureOpenAI's), the first of them that is ours."""
    raw = headers.get(b"authorization", b"")
    token = raw[7:].strip().decode("latin-1") if raw[:7].lower() == b"bearer " else ""
    for name in (b"x-api-key", b"api-key"):
        if token.startswith("mk_"):
            break
        token = headers.get(name, b"").decode("latin-1").strip() or token
    return token


def attribution(headers: Headers, name: bytes, field: str) -> str:
    # Cleaned exactly as the usage record will be, so live counters and counters rebuilt from records name
    # the same tenant and feature.
    value = headers.get(name)
    return text_clean(value.decode("latin-1"), TEXT_LIMITS[field]) if value else ""


def tags(headers: Headers) -> dict[str, str]:
    raw = headers.get(b"x-tokonomics-tags")
    return tags_clean(parse_tags(raw.decode("latin-1"))) if raw is not None else {}


def parse_tags(raw: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in raw.split(",")[:10]:
        name, sep, value = pair.partition("=")
        if sep and name.strip():
            parsed[name.strip()[:60]] = value.strip()[:200]
    return parsed


def upstream_headers(headers: Headers, endpoint: EndpointEntry) -> dict[str, str]:
    out = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers.items()
        if name not in HOP_BY_HOP and name not in CONSUMED_HEADERS and not name.startswith(b"x-tokonomics-")
    }
    # Ask for an uncompressed body: usage must be readable, and loopback/LAN bandwidth is cheap.
    out["Accept-Encoding"] = "identity"
    if endpoint.credential:
        if endpoint.wire_format == "anthropic":
            out["x-api-key"] = endpoint.credential
        elif endpoint.wire_format == "azure-openai":
            out["api-key"] = endpoint.credential
        else:
            out["Authorization"] = f"Bearer {endpoint.credential}"
    return out


def response_headers(
    upstream: aiohttp.ClientResponse, rid: str, extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    out = [
        (name, value)
        for name, value in upstream.raw_headers
        if name.lower() not in RESPONSE_DROPPED
    ]
    out.append((b"x-tokonomics-request-id", rid.encode()))
    out.extend(extra)
    return out


def cost_header(cost: Decimal | None) -> bytes:
    return b"unknown" if cost is None else f"{cost:.9f}".encode()

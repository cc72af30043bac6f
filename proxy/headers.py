"""Headers on both sides of the proxy: what a call's headers say (its key, its attribution, its error
format), what of them goes on to the provider, and what of the provider's comes back."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import unquote_plus

import aiohttp

from .catalog import BUILTIN_PROVIDERS
from .directory import EndpointEntry
from .keys import is_well_formed
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
        b"authorization", b"x-api-key", b"x-goog-api-key", b"api-key", b"x-feature-name", b"x-tenant-id",
        b"x-environment",
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
    if b"x-goog-api-key" in headers:
        return WIRE_FORMATS["gemini"]
    return WIRE_FORMATS["openai"]


def presented_key(headers: Headers, query: bytes = b"") -> str:
    """The Tokonomics key the caller sent: a Bearer token, else x-api-key (Anthropic's SDK), else api-key
    (AzureOpenAI's), else x-goog-api-key, else a `key` query parameter (the last two as google-genai and Google's
    REST examples send keys), the first that is ours; when none is, the first one sent (refused as not well
    formed)."""
    raw = headers.get(b"authorization", b"")
    bearer = raw[7:].strip().decode("latin-1") if raw[:7].lower() == b"bearer " else ""
    if bearer.startswith("mk_"):
        return bearer  # the usual call (OpenAI's SDKs, recent Anthropic ones): nothing else to look at
    candidates = [bearer, *(headers.get(name, b"").decode("latin-1").strip()
                            for name in (b"x-api-key", b"api-key", b"x-goog-api-key"))]
    if not any(token.startswith("mk_") for token in candidates):
        candidates.extend(value for name, value in query_params(query) if name == "key")
    return next((token for token in candidates if token.startswith("mk_")), next(filter(None, candidates), ""))


def query_params(query: bytes) -> list[tuple[str, str]]:
    """(name, value) of each `name=value` of a query string, decoded as a server would decode them."""
    pairs = []
    for item in query.split(b"&"):
        name, _, value = item.partition(b"=")
        pairs.append((unquote_plus(name.decode("latin-1")), unquote_plus(value.decode("latin-1")).strip()))
    return pairs


def upstream_query(query: bytes, endpoint: EndpointEntry) -> bytes:
    """The query string sent upstream: the caller's, byte for byte, less any parameter holding a Tokonomics
    key (whatever its name), and for Gemini less every `key` (the endpoint's credential goes in
    x-goog-api-key)."""
    if b"=" not in query or b"key" not in query.lower() and b"mk_" not in query and b"%" not in query:
        return query  # the usual query: no parameter that could be named key or hold ours, even encoded
    kept = []
    for item, (name, value) in zip(query.split(b"&"), query_params(query), strict=True):
        if (name == "key" and (endpoint.wire_format == "gemini" or value.startswith("mk_"))) or is_well_formed(value):
            continue
        kept.append(item)
    return b"&".join(kept)


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
        elif endpoint.wire_format == "gemini":
            out["x-goog-api-key"] = endpoint.credential
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

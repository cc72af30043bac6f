"""The one path of a proxied call (CONTRACT §1 "One path").

The server hands the proxy two paths: the raw one, as sent, and a percent-decoded one. Metering read the
decoded path while the raw one was forwarded, so `openai%2Fchat%2Fcompletions%3F/images/generations` was
metered as a chat completion and answered by the images endpoint. Here both come from one canonical path:
the raw path decoded once, refused if decoding it could change its shape (an encoded `/`, anything that
decodes to `?`, `#`, `\\`, `%` or a control character, a `.` or `..` segment, an empty segment), and
re-encoded for the provider, who decodes it back to exactly the path that was metered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

PREFIX = "/proxy/"
_ENCODED_SLASH = re.compile(rb"%2f", re.IGNORECASE)
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # billing.models.SLUG_VALIDATOR
# Bytes no decoded path may hold: a second encoding layer (%), separators a server or a provider may
# read where the proxy saw none (? # \), and control characters (NUL ends strings in some servers).
_FORBIDDEN = frozenset(b"%?#\\\x7f") | frozenset(range(0x20))
# RFC 3986 pchar and "/": what the provider receives unencoded; everything else is percent-encoded.
_SAFE = "/:@!$&'()*+,;="


@dataclass(frozen=True, slots=True)
class ProxyPath:
    provider: str  # the endpoint slug, as the caller wrote it
    rest: str  # "/chat/completions": the decoded path after the slug, which the operation is read from
    forwarded: str  # the same path percent-encoded: what is appended to the endpoint's base URL
    problem: str  # why the path is refused with invalid_path; "" when it is not


def proxy_path_parse(*, path: str, raw_path: bytes | None) -> ProxyPath:
    """The canonical path of `/proxy/{provider}/{rest}`; never raises, whatever the bytes.

    `path` is the server's decoded path, used only to name the provider of a refused path (its error
    format, its record), when it is shaped like a slug, and when a server gives no raw path.
    """
    hint = path[len(PREFIX):].partition("/")[0] if path.startswith(PREFIX) else ""
    if not _SLUG.fullmatch(hint):
        hint = ""  # a refused path's provider is recorded only if it could be one (no NUL reaches the ledger)
    raw = raw_path if raw_path is not None else quote(path, safe=_SAFE).encode()
    start = raw.find(PREFIX.encode())
    if start < 0:
        return _refused(hint, "the path does not start with /proxy/")
    raw = raw[start + len(PREFIX):]
    if _ENCODED_SLASH.search(raw):
        return _refused(hint, "an encoded '/' (%2F)")
    decoded = unquote_to_bytes(raw)
    if not _FORBIDDEN.isdisjoint(decoded):
        return _refused(hint, "an encoded separator, a second encoding (%25) or a control character")
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return _refused(hint, "bytes that are not UTF-8")
    provider, *segments = text.split("/")
    if provider in (".", "..") or any(s in (".", "..") for s in segments):
        return _refused(hint, "a '.' or '..' segment")
    if (segments and not provider) or "" in segments[:-1]:
        return _refused(hint, "an empty segment ('//')")
    rest = "/" + "/".join(segments)
    return ProxyPath(provider=provider, rest=rest, forwarded=quote(rest, safe=_SAFE), problem="")


def _refused(provider: str, problem: str) -> ProxyPath:
    return ProxyPath(provider=provider, rest="", forwarded="", problem=problem)

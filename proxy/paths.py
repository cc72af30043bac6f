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
_PREFIX_BYTES = PREFIX.encode()
_ENCODED_SLASH = re.compile(rb"%2f", re.IGNORECASE)
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # billing.models.SLUG_VALIDATOR
# Bytes no decoded path may hold: a second encoding layer (%), separators a server or a provider may
# read where the proxy saw none (? # \), and control characters (NUL ends strings in some servers).
_FORBIDDEN = frozenset(b"%?#\\\x7f") | frozenset(range(0x20))
# RFC 3986 pchar and "/": what the provider receives unencoded; everything else is percent-encoded.
_SAFE = "/:@!$&'()*+,;="
# Unreserved characters and _SAFE only: such a path decodes to itself, and quoting it changes nothing.
_PLAIN = re.compile(rb"[A-Za-z0-9._~/:@!$&'()*+,;=-]*")


@dataclass(slots=True)
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
    raw = raw_path if raw_path is not None else quote(path, safe=_SAFE).encode()
    start = raw.find(_PREFIX_BYTES)
    if start < 0:
        return _refused(path, "the path does not start with /proxy/")
    raw = raw[start + len(PREFIX):]
    if _PLAIN.fullmatch(raw):
        # The usual path: nothing encoded, so the decoded path is the raw one and already canonical.
        return _segments_checked(path, raw.decode("ascii"), canonical=True)
    if _ENCODED_SLASH.search(raw):
        return _refused(path, "an encoded '/' (%2F)")
    decoded = unquote_to_bytes(raw)
    if not _FORBIDDEN.isdisjoint(decoded):
        return _refused(path, "an encoded separator, a second encoding (%25) or a control character")
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return _refused(path, "bytes that are not UTF-8")
    return _segments_checked(path, text, canonical=False)


def _segments_checked(path: str, text: str, *, canonical: bool) -> ProxyPath:
    # Searched on the joined text, not segment by segment: this runs for every call.
    bounded = f"/{text}/"
    if "/./" in bounded or "/../" in bounded:
        return _refused(path, "a '.' or '..' segment")
    if text.startswith("/") or "//" in text.rstrip("/") or text.endswith("//"):
        return _refused(path, "an empty segment ('//')")
    provider, _, tail = text.partition("/")
    rest = "/" + tail
    return ProxyPath(provider=provider, rest=rest, forwarded=rest if canonical else quote(rest, safe=_SAFE),
                     problem="")


def _refused(path: str, problem: str) -> ProxyPath:
    hint = path[len(PREFIX):].partition("/")[0] if path.startswith(PREFIX) else ""
    if not _SLUG.fullmatch(hint):
        hint = ""  # a refused path's provider is recorded only if it could be one (no NUL reaches the ledger)
    return ProxyPath(provider=hint, rest="", forwarded="", problem=problem)


# A version segment as providers name them: v1, v2, v1beta, v1alpha2.
_VERSION_SEGMENT = re.compile(r"v[0-9]+(?:(?:alpha|beta)[0-9]*)?")


def version_dedupe(target: ProxyPath, base_url: str) -> None:
    """Drop a version segment the client repeated: with `OpenAI(base_url=f"{SITE}/proxy/openai/v1")` the path is
    `/v1/chat/completions`, and the endpoint's base URL already ends in `/v1`.

    The metered path and the forwarded one lose the same leading segment, so they stay one path; the segment is
    plain ASCII, spelt the same in both. Only a version that ends the base URL, in the same case, is dropped.
    """
    if target.problem:
        return
    version = base_url.rstrip("/").rpartition("/")[2]
    if not _VERSION_SEGMENT.fullmatch(version):
        return
    segment = "/" + version
    if (target.rest == segment or target.rest.startswith(segment + "/")) and target.forwarded.startswith(segment):
        target.rest = target.rest[len(segment):] or "/"
        target.forwarded = target.forwarded[len(segment):] or "/"

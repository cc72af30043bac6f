"""Hypothesis strategies for what a hostile client sends: proxy paths in every encoding, attribution
headers of any byte content and length, request bodies of the wrong types, huge numbers, NUL and deep
nesting. Biased towards the shapes that broke proxies before (encoded separators, dot segments,
Redis key and Lua separators, label explosions) rather than uniform noise."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from hypothesis import strategies as st

from .world import VICTIM_FEATURE, VICTIM_TENANT

PROVIDERS = ("openai", "anthropic", "vllm-internal", "gemini-native")
ROUTES = {
    "openai": ("/chat/completions", "/v1/chat/completions", "/embeddings", "/responses", "/completions", "/models"),
    "vllm-internal": ("/chat/completions", "/embeddings", "/models"),
    "anthropic": ("/v1/messages", "/v1/messages/count_tokens", "/v1/models"),
    "gemini-native": ("/v1beta/models/gemini-2.5-flash:generateContent",
                      "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                      "/v1/models/gemini-2.5-flash:countTokens",
                      "/v1beta/models/gemini-embedding-001:batchEmbedContents",
                      "/v1/models/gemini-embedding-001:embedContent", "/v1beta/models"),
}
MODELS = {"openai": "gpt-4o-mini", "vllm-internal": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5",
          "gemini-native": "gemini-2.5-flash"}

# Bytes an HTTP/1.1 server accepts in a header value (RFC 9110 field-vchar, obs-text, SP, HTAB).
HEADER_VALUE_BYTES = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])
# Headers the proxy reads or that frame the request: a case sets them on purpose, never by chance.
RESERVED_HEADERS = frozenset({
    "authorization", "x-api-key", "host", "content-length", "transfer-encoding", "connection", "expect", "te",
    "upgrade", "trailer", "x-feature-name", "x-tenant-id", "x-environment", "x-tokonomics-tags", "content-encoding",
    "keep-alive", "proxy-authorization", "x-goog-api-key",
})


@dataclass
class Case:
    """One hostile request, as sent; `hostile` holds every client value that must stay data."""

    method: str
    provider: str
    rest: str  # the raw path after /proxy/{provider}, percent-encoding and all
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    hostile: dict[str, list[bytes]] = field(default_factory=dict)  # label name -> values sent

    @property
    def raw_path(self) -> bytes:
        return f"/proxy/{self.provider}{self.rest}".encode("latin-1")

    def short(self) -> str:
        headers = [(n, v if len(v) < 120 else v[:60] + b"...%d bytes" % len(v)) for n, v in self.headers]
        body = self.body if len(self.body) < 300 else self.body[:200] + b"...%d bytes" % len(self.body)
        return f"{self.method} {self.raw_path!r} ?{self.query!r} headers={headers} body={body!r}"


# --- paths ---------------------------------------------------------------------------------------------

PATH_PIECES = [
    # separators, encoded in every case and twice
    "%2f", "%2F", "%5c", "%5C", "%3f", "%3F", "%23", "%252f", "%252F", "%255c", "%253f", "%2523",
    # dot segments in every encoding
    ".", "..", "%2e", "%2E", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e", "%252e%252e",
    # look-alikes and oddities that are not separators
    "%ef%bc%8f", "%c0%af", "%e2%88%95", "%00", "%20", "%25", ";", ";x=1", "@", ":", "~", "\\", "...", ".a", "a.",
    "%41", "%7e",
]
ROUTE_WORDS = ["v1", "chat", "completions", "embeddings", "responses", "messages", "models", "count_tokens",
               "batches", "files", "x"]
segment = st.one_of(
    st.sampled_from(ROUTE_WORDS),
    st.sampled_from(PATH_PIECES),
    st.lists(st.sampled_from(ROUTE_WORDS + PATH_PIECES), min_size=2, max_size=3).map("".join),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12),
)


# Gemini names the method after a ':' of the last segment: colons in every encoding, and methods glued on.
GEMINI_PIECES = [":", "%3a", "%3A", "%253a", ":countTokens", ":generateContent", "%3AcountTokens",
                 ":streamGenerateContent", "::"]
gemini_segment = st.one_of(
    segment,
    st.sampled_from(GEMINI_PIECES),
    st.lists(st.sampled_from(ROUTE_WORDS + PATH_PIECES + GEMINI_PIECES), min_size=2, max_size=3).map("".join),
)


@st.composite
def hostile_rest(draw: st.DrawFn, provider: str) -> str:
    """A route of the provider with hostile segments spliced in (for Gemini, glued to its last segment too),
    or hostile segments alone."""
    route = draw(st.sampled_from(ROUTES.get(provider, ROUTES["openai"])))
    parts = route.strip("/").split("/")
    pieces = gemini_segment if provider == "gemini-native" else segment
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(parts)))
        if provider == "gemini-native" and draw(st.booleans()):
            parts[-1] += draw(pieces)  # glued on: a second method, an encoded colon, a suffix
            continue
        parts.insert(at, draw(pieces))
    if draw(st.integers(0, 9)) == 0:
        parts = draw(st.lists(segment, min_size=1, max_size=5))
    tail = draw(st.sampled_from(["", "", "", "/", "//"]))
    return "/" + "/".join(parts) + tail


provider_slug = st.one_of(
    st.sampled_from(PROVIDERS),
    st.sampled_from(PROVIDERS),
    st.sampled_from(["OpenAI", "openai%2fx", "%6fpenai", "..", "%2e%2e", "op*nai", "a" * 300, "tk:{a:1}", "gemini"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.%", min_size=1, max_size=80),
)


def chat_body(provider: str, rest: str) -> bytes:
    """A well-formed body for whatever operation the path looks most like, so that what is forwarded succeeds."""
    model = MODELS.get(provider, "gpt-4o-mini")
    if provider == "gemini-native":
        text = {"parts": [{"text": "hi"}]}
        if "mbed" in rest.lower():
            return orjson.dumps({"content": text, "requests": [{"model": "models/gemini-embedding-001",
                                                                "content": text}]})
        return orjson.dumps({"contents": [text], "generationConfig": {"maxOutputTokens": 5}})
    if "embeddings" in rest:
        return orjson.dumps({"model": "text-embedding-3-small", "input": "hi"})
    if "responses" in rest:
        return orjson.dumps({"model": model, "input": "hi", "max_output_tokens": 5})
    if "completions" in rest and "chat" not in rest:
        return orjson.dumps({"model": model, "prompt": "hi", "max_tokens": 5})
    return orjson.dumps({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})


@st.composite
def path_cases(draw: st.DrawFn) -> Case:
    provider = draw(provider_slug)
    rest = draw(hostile_rest(provider))
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET"]))
    query = draw(st.sampled_from([b"", b"", b"a=1", b"x=%2F..%2F", b"api-version=2024-10-21&x=..%5C"]))
    headers = [(b"anthropic-version", b"2023-06-01")] if provider == "anthropic" else []
    case = Case(method, provider, rest, query, headers, chat_body(provider, rest) if method == "POST" else b"")
    case.hostile["provider"] = [provider.encode("latin-1")]
    return case


# --- attribution values --------------------------------------------------------------------------------

header_bytes = st.binary(max_size=400).map(lambda raw: bytes(b for b in raw if b in HEADER_VALUE_BYTES))
# What a server hands on: surrounding whitespace is not part of a header value.
header_value = st.one_of(
    header_bytes,
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")).map(
        lambda raw: bytes(b for b in raw if b in HEADER_VALUE_BYTES)),
    st.builds(lambda piece, times: piece * times,
              st.sampled_from([b"a", b"\xff", b"|", b":", b"{", b"}", b"*", b"\xc3\xa9", b"%00", b"\\"]),
              st.integers(200, 70_000)),
    st.sampled_from([
        b"*", b"|", b"||", b"tk:{a:1}:b:1:0", b"}{", b"{a:2}", b"a|tk:{a:1}:b:1:0", b"*:*", b"[a-z]*", b"?",
        b"%2F..%2F", b"\\x00", b"\xef\xbb\xbf", b"\xc0\xaf", b"unknown", b"production", b"_other",
        b'"}', b"\\\"", b"-- ", b"'; DROP TABLE", b"=cmd|' /C calc'!A0", b"@SUM(1)", b"\t",
    ]),
).map(lambda raw: raw.strip(b" \t"))


def spares_bystanders(value: bytes) -> bool:
    """A value that names no bystander: a call naming one moves its counter by right."""
    folded = value.lower()
    return VICTIM_TENANT.encode() not in folded and VICTIM_FEATURE.encode() not in folded


ATTRIBUTION = {
    "feature": b"x-feature-name", "tenant": b"x-tenant-id", "environment": b"x-environment",
    "tags": b"x-tokonomics-tags",
}
tags_value = st.one_of(
    header_value,
    st.lists(st.tuples(header_value, header_value), max_size=15).map(
        lambda pairs: b", ".join(k.replace(b",", b"") + b"=" + v.replace(b",", b"") for k, v in pairs)),
)
header_name = st.from_regex(r"\A[a-z][a-z0-9-]{0,30}\Z").filter(
    lambda name: name not in RESERVED_HEADERS and not name.startswith(("x-sim-", "x-tokonomics-", "anthropic-")))


@st.composite
def attribution_cases(draw: st.DrawFn) -> Case:
    """A well-formed call to a metered route whose attribution headers (and a few others) are hostile."""
    provider = draw(st.sampled_from(PROVIDERS[:2]))
    rest = "/chat/completions" if provider == "openai" else "/v1/messages"
    headers = [(b"anthropic-version", b"2023-06-01")] if provider == "anthropic" else []
    case = Case("POST", provider, rest, headers=headers)
    for name, header in ATTRIBUTION.items():
        if draw(st.integers(0, 3)):
            value = draw((tags_value if name == "tags" else header_value).filter(spares_bystanders))
            headers.append((header, value))
            case.hostile[name] = [value]
    for _ in range(draw(st.integers(0, 2))):
        headers.append((draw(header_name).encode(), draw(header_value)))
    stream = draw(st.booleans())
    body = {"model": MODELS[provider], "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    case.body = orjson.dumps(body)
    return case


# --- bodies --------------------------------------------------------------------------------------------

huge_int = st.sampled_from([2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63), -1, 0])
weird_scalar = st.one_of(
    st.none(), st.booleans(), huge_int, st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.sampled_from(["1e400", "NaN", "\x00", "9" * 50]),
)
json_value = st.recursive(weird_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=10)
model_value = st.one_of(
    st.sampled_from(["gpt-4o-mini", "claude-sonnet-4-5", "text-embedding-3-small"]),
    st.text(max_size=300),
    st.sampled_from(["gpt-4o-mini\x00", "gpt-4o-mini" + "x" * 5000, "\x00", "*", "tk:{a:1}", "a|b", "\ud800x"]),
    weird_scalar,
)


def nested(depth: int, leaf: object = "hi") -> object:
    value: object = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


@st.composite
def body_object(draw: st.DrawFn, provider: str) -> dict:
    body: dict = {}
    if draw(st.integers(0, 4)):
        body["model"] = draw(model_value)
    if provider == "anthropic" or draw(st.booleans()):
        body["messages"] = draw(st.one_of(
            st.just([{"role": "user", "content": "hi"}]),
            json_value,
            st.builds(lambda depth: [{"role": "user", "content": nested(depth)}], st.integers(50, 1000)),
            st.builds(lambda n: [{"role": "user", "content": "x" * n}], st.integers(1000, 200_000)),
            st.just([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}] * 500}]),
        ))
    else:
        body["input"] = draw(st.one_of(st.just("hi"), json_value, st.builds(nested, st.integers(50, 1000))))
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of", "stream",
                 "stream_options", "tools", "temperature"):
        if draw(st.integers(0, 3)) == 0:
            body[name] = draw(st.one_of(weird_scalar, json_value, st.builds(nested, st.integers(10, 1000))))
    return body


def orjson_or_none(value: object) -> bytes | None:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return None


raw_json_bodies = st.sampled_from([
    b"", b"null", b"[]", b"1", b'"x"', b"{", b"\x00", b'{"model": "gpt-4o-mini"\x00}', b"\xff\xfe{}",
    b'{"max_tokens": 1' + b"0" * 5000 + b"}", b'{"max_tokens": 1e400}', b'{"n": -0}', b"[" * 5000 + b"]" * 5000,
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "model": 1}',
    b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800"}]}',
])


@st.composite
def body_cases(draw: st.DrawFn) -> Case:
    provider = draw(st.sampled_from(PROVIDERS))
    rest = draw(st.sampled_from(ROUTES[provider][:-1]))  # the metered ones
    headers = [(b"anthropic-version", b"2023-06-01")] if provider == "anthropic" else []
    case = Case("POST", provider, rest, headers=headers)
    payload = draw(body_object(provider)) if draw(st.integers(0, 5)) else None
    encoded = orjson_or_none(payload) if payload is not None else None
    case.body = encoded if encoded is not None else draw(raw_json_bodies)
    if encoded is not None and isinstance(payload.get("model"), str):
        case.hostile["model"] = [payload["model"].encode()]
    return case

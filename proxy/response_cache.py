"""The opt-in response cache: an account that turns it on has an identical call answered from the answer
an earlier call got, with no upstream call and nothing owed (docs/CONTRACT.md §7 "Routes and cache" →
Response cache).

What is kept, per entry: the provider's answer bytes (a stream as the chunks the client received, so a hit
is replayed chunk by chunk with the same framing), its status and content type, and the usage the provider
reported (to price what a hit saved). Never the request: an entry is found by an HMAC of the canonical
request under a key derived for the account, so neither a Redis key nor an index reveals content, and no
two accounts ever share an entry. The entry itself is sealed with AES-GCM under another key derived for
the account (tokonomics/crypto.py `account_derived_key`), bound to its own name.

Redis, all under the account's hash tag (proxy/budgets.py `account_prefix`): `…:rc:e:<name>` the sealed
entry with its TTL; `…:rc:idx` a sorted set of the names by expiry; `…:rc:size` a hash of their sizes and
the total. `lua/store_cache_entry.lua` stores one entry and evicts the entries nearest their expiry (with
one TTL for all: the oldest) until the account's total fits its cap.

The rules of what is cached (`cache_request`): metered operations only; answers 2xx, complete (a stream
whose final event was seen), no larger than the account's per-entry limit; sampled calls (temperature above
0, or none given: OpenAI, Anthropic and Gemini all default to 1) only when the account (or the call's route)
says so. A routed call's entry is its route's (the route and its targets are part of the name), kept for the
route's TTL when it sets one (`cache_ttl`).
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings as django_settings
from redis.exceptions import RedisError

from tokonomics.crypto import account_derived_key

from .budgets import account_prefix
from .providers.base import Operation, RequestInfo
from .redis_pipeline import LuaScript, ProxyRedis
from .usage import TokenUsage

if TYPE_CHECKING:
    from .directory import RouteEntry

log = logging.getLogger(__name__)

LUA_STORE = LuaScript.of((Path(__file__).parent / "lua" / "store_cache_entry.lua").read_text())
FORMAT_VERSION = 1
CACHED_OPERATIONS = frozenset(Operation)  # every metered operation; free and unmetered routes never
# Request headers that change the answer, and so are part of the canonical request.
ANSWER_HEADERS = (b"anthropic-version", b"anthropic-beta", b"openai-beta")
# Bytes of a stream's end searched for its final event: `data: [DONE]` (chat, completions), `message_stop`
# (Anthropic), `response.completed` (Responses), a `finishReason` (Gemini, whose streams have no terminator).
STREAM_TAIL_BYTES = 4096
FINAL_EVENTS = (b"[DONE]", b"message_stop", b'"response.completed"', b'"finishReason"')
_LENGTH = struct.Struct(">I")


@dataclass(slots=True, frozen=True)
class CacheSettings:
    """An account's cache, as the directory caches it (None on the account: off)."""

    ttl_seconds: int
    max_entry_bytes: int
    max_total_bytes: int
    nonzero_temperature: bool  # cache sampled calls too


def cache_ttl(settings: CacheSettings, route: RouteEntry | None = None) -> int:
    """The TTL of a call's entry: its route's own, else the account's."""
    if route is not None and route.cache_ttl_seconds is not None:
        return route.cache_ttl_seconds
    return settings.ttl_seconds


def cache_sampled_allowed(settings: CacheSettings, route: RouteEntry | None = None) -> bool:
    """Whether calls sampled above temperature 0 are cached: its route's say, else the account's."""
    if route is not None and route.cache_nonzero_temperature is not None:
        return route.cache_nonzero_temperature
    return settings.nonzero_temperature


@dataclass(slots=True)
class CacheCall:
    """One cacheable call: where its entry lives, and (on a miss) the answer as it is recorded."""

    account_id: int
    name: str  # hex HMAC of the canonical request: the entry's name
    ttl_seconds: int
    max_entry_bytes: int
    max_total_bytes: int
    status: int = 0
    content_type: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    too_large: bool = False
    complete: bool = False

    def record(self, chunk: bytes) -> None:
        """Keep a chunk the client received; past the entry limit nothing more is kept (nor stored)."""
        if self.too_large or not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_entry_bytes:
            self.too_large = True
            self.chunks.clear()
            return
        self.chunks.append(chunk)

    def stream_finished(self) -> bool:
        """The final event was seen: the stream is whole, not cut by the provider or the client."""
        tail = b"".join(self.chunks[-8:])[-STREAM_TAIL_BYTES:]
        return any(marker in tail for marker in FINAL_EVENTS)


@dataclass(slots=True, frozen=True)
class CachedAnswer:
    """An entry opened: what is replayed, and what the original call reported."""

    status: int
    content_type: bytes
    streamed: bool
    chunks: list[bytes]
    usage: TokenUsage
    served_model: str
    cost_usd: Decimal | None  # what the original call cost, as it was priced then


# --- which calls, and under which name -------------------------------------------------------------


def sampling_temperature(operation: Operation, payload: dict[str, Any]) -> float | None:
    """The call's temperature; None when it gives none (the provider's default, 1 for all three formats)
    or one that is not a number. Embeddings do not sample: 0."""
    if operation is Operation.EMBEDDINGS:
        return 0.0
    value = payload.get("temperature")
    if operation is Operation.GENERATE_CONTENT:
        config = payload.get("generationConfig")
        value = config.get("temperature") if isinstance(config, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def canonical_request(*, wire: str, provider: str, method: str, path: str, query: bytes, info: RequestInfo,
                      payload: dict[str, Any], headers: dict[bytes, bytes], route: RouteEntry | None = None) -> bytes:
    """Everything that makes the answer what it is, as canonical JSON (sorted keys, no whitespace): the
    endpoint and wire format, method, path and query, the model the call resolved to, whether it streams
    (and whether the proxy strips a usage chunk the client did not ask for), the headers that change the
    answer, the body as it goes upstream, and for a routed call its route and targets (a route's answer is its
    own: another route, or the same name served by other models, is another entry)."""
    return orjson.dumps(
        {
            "v": FORMAT_VERSION, "wire": wire, "provider": provider, "method": method.upper(), "path": path,
            "query": query.decode("latin-1"), "model": info.model, "stream": info.stream,
            "strip_usage": info.strip_usage_chunk,
            "headers": {name.decode("latin-1"): headers[name].decode("latin-1")
                        for name in ANSWER_HEADERS if name in headers},
            "body": payload,
            "route": None if route is None else [route.name, [target.label for target in route.targets]],
        },
        option=orjson.OPT_SORT_KEYS,
    )


def entry_name(account_id: int, canonical: bytes) -> str:
    """The entry's name: an HMAC under the account's naming key, so it tells nothing of the request and is
    never the same for two accounts."""
    # hmac.digest is the one-shot C path: a few microseconds where hmac.new costs about fifteen.
    return hmac.digest(account_derived_key(account_id, purpose="response-cache-name"), canonical, "sha256").hex()


def cache_request(*, settings: CacheSettings | None, account_id: int, wire: str, provider: str, method: str,
                  path: str, query: bytes, info: RequestInfo | None, headers: dict[bytes, bytes],
                  route: RouteEntry | None = None) -> CacheCall | None:
    """The call's cache entry, or None when this call is not cached (cache off, an operation not metered, a
    body that is not a JSON object, a sampled call the settings leave out)."""
    if settings is None or info is None or info.operation not in CACHED_OPERATIONS:
        return None
    try:
        payload = orjson.loads(info.body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    temperature = sampling_temperature(info.operation, payload)
    if (temperature is None or temperature > 0) and not cache_sampled_allowed(settings, route):
        return None
    canonical = canonical_request(wire=wire, provider=provider, method=method, path=path, query=query, info=info,
                                  payload=payload, headers=headers, route=route)
    return CacheCall(account_id=account_id, name=entry_name(account_id, canonical),
                     ttl_seconds=cache_ttl(settings, route), max_entry_bytes=settings.max_entry_bytes,
                     max_total_bytes=settings.max_total_bytes)


# --- Redis keys ---------------------------------------------------------------------------------------


def entry_key(account_id: int, name: str) -> str:
    return f"{account_prefix(account_id)}:rc:e:{name}"


def index_key(account_id: int) -> str:
    return f"{account_prefix(account_id)}:rc:idx"


def sizes_key(account_id: int) -> str:
    return f"{account_prefix(account_id)}:rc:size"


# --- sealing ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _sealer(master: bytes, account_id: int) -> AESGCM:
    # Keyed by the master key too, so a changed TOKONOMICS_ENCRYPTION_KEY (tests) is never served a stale cipher.
    return AESGCM(account_derived_key(account_id, purpose="response-cache-seal"))


def _aead(account_id: int) -> AESGCM:
    return _sealer(django_settings.TOKONOMICS_ENCRYPTION_KEY, account_id)


def entry_seal(account_id: int, name: str, plain: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + _aead(account_id).encrypt(nonce, plain, name.encode())


def entry_open(account_id: int, name: str, sealed: bytes) -> bytes | None:
    """The entry's plain bytes; None when it does not open (another key, another name, or damaged)."""
    try:
        return _aead(account_id).decrypt(sealed[:12], sealed[12:], name.encode())
    except (InvalidTag, ValueError):
        return None


def entry_encode(*, call: CacheCall, streamed: bool, usage: TokenUsage, served_model: str,
                 cost_usd: Decimal | None) -> bytes:
    meta = orjson.dumps({
        "v": FORMAT_VERSION, "status": call.status, "content_type": call.content_type.decode("latin-1"),
        "streamed": streamed, "served_model": served_model, "cost": None if cost_usd is None else str(cost_usd),
        "usage": [usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cache_write_tokens,
                  usage.cache_write_1h_tokens, usage.reasoning_tokens],
    })
    parts = [_LENGTH.pack(len(meta)), meta]
    for chunk in call.chunks:
        parts += [_LENGTH.pack(len(chunk)), chunk]
    return b"".join(parts)


def entry_decode(plain: bytes) -> CachedAnswer | None:
    try:
        (length,) = _LENGTH.unpack_from(plain, 0)
        meta = orjson.loads(plain[4:4 + length])
        if meta.get("v") != FORMAT_VERSION:
            return None
        chunks, at = [], 4 + length
        while at < len(plain):
            (size,) = _LENGTH.unpack_from(plain, at)
            chunks.append(plain[at + 4:at + 4 + size])
            at += 4 + size
        fresh, output, cached, written, written_1h, reasoning = (int(n) for n in meta["usage"])
        usage = TokenUsage(input_tokens=fresh, output_tokens=output, cached_input_tokens=cached,
                           cache_write_tokens=written, cache_write_1h_tokens=written_1h, reasoning_tokens=reasoning)
        return CachedAnswer(status=int(meta["status"]), content_type=str(meta["content_type"]).encode("latin-1"),
                            streamed=bool(meta["streamed"]), chunks=chunks, usage=usage,
                            served_model=str(meta["served_model"]),
                            cost_usd=None if meta.get("cost") is None else Decimal(str(meta["cost"])))
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError):
        return None


# --- lookup and store ---------------------------------------------------------------------------------


async def cache_get(redis: ProxyRedis, call: CacheCall) -> CachedAnswer | None:
    """The entry of this call, opened; None on a miss, and when Redis cannot say (the call goes upstream)."""
    try:
        sealed = await redis.execute("GET", entry_key(call.account_id, call.name))
    except (RedisError, OSError):
        log.warning("response cache lookup failed; the call goes upstream")
        return None
    if not sealed:
        return None
    plain = entry_open(call.account_id, call.name, sealed)
    return entry_decode(plain) if plain is not None else None


async def cache_put(redis: ProxyRedis, call: CacheCall, *, streamed: bool, usage: TokenUsage,
                    served_model: str, cost_usd: Decimal | None, now_ms: int) -> bool:
    """Store the recorded answer (the caller checked it may be kept); False when it was not stored."""
    plain = entry_encode(call=call, streamed=streamed, usage=usage, served_model=served_model, cost_usd=cost_usd)
    sealed = entry_seal(call.account_id, call.name, plain)
    if len(sealed) > call.max_total_bytes:
        return False
    keys = [entry_key(call.account_id, call.name), index_key(call.account_id), sizes_key(call.account_id)]
    prefix = keys[0][: -len(call.name)]
    try:
        await redis.evalsha(LUA_STORE, keys, [call.name, sealed, call.ttl_seconds * 1000, now_ms,
                                              call.max_total_bytes, prefix])
    except (RedisError, OSError):
        log.warning("response cache store failed; the answer is not kept")
        return False
    return True


"""The response cache's steps in a call's life (proxy/gateway.py): look the call up after admission (and
the input guardrails), replay a hit instead of forwarding, and keep a miss's answer once it is whole.

A hit owes nothing: its reservation is settled at $0 and its record says `cache_hit` with what the call
would have cost (`cache_saved_usd`: the original's reported usage priced at this call's prices, so an
account's price override or a price change since counts). Its tokens are recorded as 0: no provider
processed any, so token budgets, rate limits and token charts count none. The rules of what is kept are
proxy/response_cache.py's.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING

from . import metrics
from .admission import price
from .context import ProxyContext
from .headers import Headers, cost_header, upstream_query
from .relay import Send
from .response_cache import CachedAnswer, cache_get, cache_put, cache_request
from .usage import TokenUsage

if TYPE_CHECKING:
    from .gateway import Call

HIT, MISS = b"hit", b"miss"
CACHE_HEADER = b"x-tokonomics-cache"


async def cache_lookup(*, call: Call, ctx: ProxyContext, method: str, rest: str, query: bytes,
                       headers: Headers) -> CachedAnswer | None:
    """The kept answer to this very request, if the account caches it and one is kept; marks the call
    cacheable (`call.cache`) either way, so a miss's answer is recorded as it is relayed."""
    account, endpoint = call.account, call.endpoint
    if account is None or account.cache is None or endpoint is None:
        return None
    cache = cache_request(settings=account.cache, account_id=account.id, wire=call.wire.name,
                          provider=call.provider, method=method, path=rest, query=upstream_query(query, endpoint),
                          info=call.info, headers=headers, route=call.route)
    if cache is None:
        return None
    call.cache = cache
    answer = None if ctx.quota.breaker.is_open else await cache_get(ctx.redis, cache)
    if answer is None:
        metrics.add(metrics.cache_lookup_series(call.provider_label, "miss"))
    return answer


async def cache_replay(*, call: Call, answer: CachedAnswer, send: Send) -> None:
    """Answer from the cache: the kept bytes, a stream chunk by chunk as it first came; nothing upstream."""
    assert call.info is not None
    call.cache_hit = True
    call.status, call.streamed, call.served_model = answer.status, answer.streamed, answer.served_model
    call.usage, call.cost_usd = TokenUsage(), Decimal(0)
    call.cache_saved_usd = saved = hit_saving(call, answer)
    headers = [(b"content-type", answer.content_type), (b"x-tokonomics-request-id", call.rid.encode()),
               (b"x-tokonomics-cost-usd", cost_header(Decimal(0))), (CACHE_HEADER, HIT)]
    call.overhead_seconds = time.perf_counter() - call.started
    if answer.streamed:
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [*headers, (b"cache-control", b"no-cache")]})
        for chunk in answer.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        body = b"".join(answer.chunks)
        headers += [(b"content-length", str(len(body)).encode()),
                    (b"x-tokonomics-overhead-ms", f"{call.overhead_seconds * 1000:.3f}".encode())]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    metrics.add(metrics.cache_lookup_series(call.provider_label, "hit"))
    if saved:
        metrics.add(metrics.cache_saved_series(call.provider_label), float(saved))


def hit_saving(call: Call, answer: CachedAnswer) -> Decimal | None:
    """What the hit saved: the original's usage at this call's prices (the model asked for, else the one that
    served it), so today's prices and the account's overrides count; else what the original cost then. A routed
    call's model names a route, whose target (endpoint and model) the entry does not keep: what it cost then."""
    assert call.info is not None
    if call.route is not None:
        return answer.cost_usd
    saved = price(call, answer.usage, call.info.model)
    if saved is None and answer.served_model:
        saved = price(call, answer.usage, answer.served_model)
    return saved if saved is not None else answer.cost_usd


async def cache_store(*, call: Call, ctx: ProxyContext) -> None:
    """Keep a miss's answer: 2xx, whole (a stream whose final event was seen), with the usage the provider
    reported, and within the account's entry limit. After the client has it all and the call is settled."""
    cache = call.cache
    if cache is None or call.cache_hit or not cache.complete or cache.too_large:
        return
    if not 200 <= call.status < 300 or call.usage is None or call.usage_source != "reported":
        return
    if call.streamed and not cache.stream_finished():
        return
    if await cache_put(ctx.redis, cache, streamed=call.streamed, usage=call.usage, served_model=call.served_model,
                       cost_usd=call.cost_usd, now_ms=int(time.time() * 1000)):
        metrics.add(metrics.cache_stored_series(call.provider_label))

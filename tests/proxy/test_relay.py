"""A stream the provider cuts (`relay.cut_short`): the client gets every byte the provider sent before
the cut and then a cut of its own, never a terminator; the record counts what was seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.directory import AccountEntry, EndpointEntry
from proxy.gateway import Call
from proxy.providers import WIRE_FORMATS
from proxy.providers.base import Operation
from proxy.relay import relay_stream

NOW = datetime.now(UTC)
CHUNK = b'data: {"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"%s"}}]}'
WHOLE = CHUNK % b"Hello" + b"\n\n"
UNFINISHED = CHUNK % (b"w" * 400)  # the provider's last event before the cut, never terminated by a blank line


class CutStream:
    """An upstream answer whose body breaks after `chunks`, as aiohttp reports a provider cutting it."""

    status = 200
    raw_headers = ((b"Content-Type", b"text/event-stream"),)

    def __init__(self, chunks: list[bytes]) -> None:
        self.content = self
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        raise aiohttp.ClientPayloadError("Response payload is not completed")


def streamed_call(payload: dict[str, Any]) -> Call:
    wire = WIRE_FORMATS["openai"]
    call = Call(rid="req_cut", started=time.perf_counter(), created_at=NOW.timestamp(), started_at=NOW,
                provider="openai", wire=wire, info=wire.parse_request(Operation.CHAT, orjson.dumps(payload)))
    call.endpoint = EndpointEntry(slug="openai", wire_format="openai", base_url="", pricing_provider="openai",
                                  credential="")
    call.account = AccountEntry(id=1, timezone="UTC", monthly_request_limit=0, on_redis_unavailable="default",
                                allow_unmetered_routes=False, endpoints={}, budgets=(), prices={})
    return call


async def relay_cut(call: Call, chunks: list[bytes]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays
        raise AssertionError

    with pytest.raises(aiohttp.ClientPayloadError):
        await relay_stream(call=call, upstream=CutStream(chunks), receive=receive, send=send,
                           started=time.perf_counter())
    return sent


@pytest.mark.parametrize("stream_options", [None, {"include_usage": True}], ids=["usage-chunk-stripped", "as-sent"])
def test_a_cut_stream_passes_on_everything_sent_before_the_cut_and_counts_it(stream_options) -> None:
    payload: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if stream_options is not None:
        payload["stream_options"] = stream_options
    call = streamed_call(payload)
    assert call.info is not None and call.info.strip_usage_chunk is (stream_options is None)

    sent = asyncio.run(relay_cut(call, [WHOLE, UNFINISHED]))

    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in bodies) == WHOLE + UNFINISHED  # as the client would have seen it
    assert all(m["more_body"] for m in bodies)  # no terminator: the client learns of the cut
    assert call.usage_source == "estimated" and call.usage is not None
    assert call.usage.output_tokens >= 400 // 4  # the unfinished event's content was spent too

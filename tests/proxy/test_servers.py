"""The proxy under each ASGI server the README names: uvicorn (production) and Daphne (`manage.py runserver`)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest

from ..support import KEY, SERVERS, Stack, proxy_served_by

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64, "stream": True}


@pytest.fixture(params=SERVERS)
def proxy_url(request: pytest.FixtureRequest, stack: Stack) -> Iterator[str]:
    yield from proxy_served_by(request.param, stack.proxy)


def test_a_stream_the_provider_cuts_ends_at_once_without_a_terminator(proxy_url: str) -> None:
    for _ in range(2):  # and again: the server keeps ending cut streams (Daphne's checker once died here)
        _cut_stream_ends_at_once(proxy_url)


def _cut_stream_ends_at_once(proxy_url: str) -> None:
    lines: list[str] = []
    with httpx.stream("POST", f"{proxy_url}/proxy/openai/chat/completions", json=CHAT, timeout=20,
                      headers={"Authorization": f"Bearer {KEY}", "X-Sim-Drop-After": "3"}) as response:
        assert response.status_code == 200
        request_id = response.headers["x-tokonomics-request-id"]
        started = time.monotonic()
        # Not a clean end, and not the read timeout: the connection closes mid-body.
        with pytest.raises(httpx.RemoteProtocolError):
            for line in response.iter_lines():
                lines.append(line)
        waited = time.monotonic() - started
    assert waited < 5, waited  # generous: the bug was a wait for the server's own timeout, or forever
    assert any(line.startswith("data: {") for line in lines)
    assert "data: [DONE]" not in lines
    deadline = time.monotonic() + 5
    while (saved := UsageRecord.objects.filter(request_id=request_id).first()) is None:
        assert time.monotonic() < deadline, "no usage record"
        usage_ingest(max_seconds=0.2)
    assert saved.usage_source == "estimated" and saved.streamed and saved.output_tokens > 0


def test_every_response_has_one_date_and_one_server_header(proxy_url: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    url = f"{proxy_url}/proxy/openai/chat/completions"
    responses = [
        httpx.post(url, json={**CHAT, "stream": False}, headers=auth),
        httpx.post(url, json=CHAT, headers=auth),
        httpx.post(url, json={**CHAT, "stream": False}, headers={**auth, "X-Sim-Status": "500"}),
        httpx.post(url, json={**CHAT, "stream": False}, headers={"Authorization": "Bearer mk_" + "q" * 40}),
    ]
    for response in responses:
        names = [name.lower() for name, _ in response.headers.multi_items()]
        assert names.count("date") == 1, (response.status_code, response.headers)
        assert names.count("server") == 1, (response.status_code, response.headers)


@pytest.mark.parametrize("server_log", ["uvicorn.error", "daphne.server"])
def test_servers_log_a_cut_stream_as_one_warning_not_a_crash(server_log: str) -> None:
    import proxy.app  # noqa: F401  (installs the filter)
    from proxy.relay import UpstreamCut

    cut = UpstreamCut("openai cut the stream of req_1")
    record = logging.LogRecord(server_log, logging.ERROR, __file__, 1, "Exception in ASGI application\n", None,
                               (UpstreamCut, cut, None))
    assert logging.getLogger(server_log).filter(record)
    assert (record.levelno, record.exc_info, record.getMessage()) == (logging.WARNING, None, str(cut))


def test_control_characters_a_server_lets_through_get_a_400_not_a_500(proxy_url: str) -> None:
    # Daphne passes a DEL in the query and a control character in a header on to the application; the
    # upstream client refuses to send them (uvicorn refuses such requests itself, with its own 400).
    body = b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
    host, _, port = proxy_url.removeprefix("http://").partition(":")
    for target, extra in ((b"/proxy/openai/chat/completions?a=\x7f", b""),
                          (b"/proxy/openai/chat/completions", b"X-Custom: a\x01b\r\n")):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                         + b"\r\nContent-Type: application/json\r\n" + extra
                         + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]

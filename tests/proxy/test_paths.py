"""One path, metered and forwarded alike (CONTRACT §1): the path the operation and the route policy are
read from is the path the provider receives, and a path whose decoded and raw forms could disagree is
refused with 400 invalid_path before anything reaches the provider."""

from __future__ import annotations

import http.client
from decimal import Decimal
from urllib.parse import urlsplit

import orjson
import pytest

from billing.models import Budget, UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.paths import proxy_path_parse

from ..support import KEY, Stack, proxy_config_seen

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def raw_request(base: str, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """A request whose target goes out byte for byte: httpx would normalise dot segments away."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# Every way a proxy path could mean one thing to the proxy and another to the provider.
INVALID = [
    "/proxy/openai/chat%2Fcompletions",
    "/proxy/openai/chat%2fcompletions",
    "/proxy/openai/chat/completions%3F/images/generations",
    "/proxy/openai/chat/completions%3f",
    "/proxy/openai/chat/completions%23/images/generations",
    "/proxy/openai/models%5C..%5Cfiles",
    "/proxy/openai/models%5cfiles",
    "/proxy/openai/models/../files",
    "/proxy/openai/models/..",
    "/proxy/openai/./chat/completions",
    "/proxy/openai/models/%2E%2E/files",
    "/proxy/openai/models/%2e%2e/files",
    "/proxy/openai/models/.%2E/files",
    "/proxy/openai/%2E/chat/completions",
    "/proxy/openai/models/%252E%252E/files",
    "/proxy/openai/chat%252Fcompletions",
    "/proxy/openai/chat%25252Fcompletions",
    "/proxy/openai/chat/completions%00",
    "/proxy/openai/chat/completions%0A",
    "/proxy/openai/chat/%FFcompletions",
    "/proxy/openai/chat/completions%zz",
    "/proxy/openai/chat/completions%2",
    "/proxy/openai//chat/completions",
    "/proxy/openai/v1//images/generations",
    "/proxy/openai%2Fchat%2Fcompletions%3F/images/generations",
    "/proxy/openai%2Fmodels/files",
    "/proxy/openai%2F..%2Ffiles/x",
    "/proxy/%2E%2E/openai/chat/completions",
    "/proxy/../proxy/openai/chat/completions",
    "/proxy/%FF%FE/chat/completions",
    "/proxy/open%00ai/chat/completions",
]


@pytest.mark.parametrize("target", INVALID)
def test_parse_refuses_paths_that_could_mean_two_things(target: str) -> None:
    from urllib.parse import unquote

    parsed = proxy_path_parse(path=unquote(target), raw_path=target.encode())
    assert parsed.problem


def test_parse_refuses_a_literal_backslash_and_a_decoded_question_mark() -> None:
    assert proxy_path_parse(path="/proxy/openai/models\\..\\files", raw_path=b"/proxy/openai/models\\..\\files").problem
    # A server that gives no raw path: the decoded one is judged alone.
    assert proxy_path_parse(path="/proxy/openai/chat/completions?/images", raw_path=None).problem


@pytest.mark.parametrize(("raw", "rest", "forwarded"), [
    (b"/proxy/openai/chat/completions", "/chat/completions", "/chat/completions"),
    (b"/proxy/openai/v1/chat/completions/", "/v1/chat/completions/", "/v1/chat/completions/"),
    (b"/proxy/openai/chat/completi%6Fns", "/chat/completions", "/chat/completions"),
    (b"/proxy/gemini/models/gemini-2.0-flash:generateContent", "/models/gemini-2.0-flash:generateContent",
     "/models/gemini-2.0-flash:generateContent"),
    (b"/proxy/openai/models/ft%3Agpt-4o%20x", "/models/ft:gpt-4o x", "/models/ft:gpt-4o%20x"),
    (b"/proxy/openai", "/", "/"),
])
def test_parse_gives_one_canonical_path(raw: bytes, rest: str, forwarded: str) -> None:
    from urllib.parse import unquote

    parsed = proxy_path_parse(path=unquote(raw.decode()), raw_path=raw)
    assert not parsed.problem
    assert parsed.provider == raw.split(b"/")[2].decode()
    assert (parsed.rest, parsed.forwarded) == (rest, forwarded)


# --- end to end -------------------------------------------------------------------------------

def _ingested() -> list[UsageRecord]:
    usage_ingest(max_seconds=1)
    return list(UsageRecord.objects.order_by("created_at"))


def test_encoded_separators_get_invalid_path_and_never_reach_the_provider(stack: Stack) -> None:
    stack.clear_sim()
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for target in INVALID:
        status, headers, body = raw_request(stack.proxy, "POST", target, auth, orjson.dumps(CHAT))
        assert status == 400, (target, body)
        assert orjson.loads(body)["error"]["type"] == "invalid_request_error", target
        assert orjson.loads(body)["error"]["code"] == "invalid_path", target
        assert headers["x-tokonomics-request-id"]
    assert stack.sim_requests() == []
    # Each refusal is recorded, and a malformed provider segment is never stored as one.
    records = _ingested()
    assert len(records) == len(INVALID)
    assert {r.provider for r in records} <= {"openai", ""}


def test_the_two_exploit_paths_are_refused(stack: Stack) -> None:
    """The decoded path said chat/completions (metered) or models (free); the raw one went to the
    images and files endpoints, with the account's shared credential."""
    Budget.objects.create(account=stack.account, scope="account", match="", period="month",
                          limit_usd=Decimal("1"), hard=True)
    stack.clear_sim()
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    images = orjson.dumps({"model": "gpt-4o-mini", "prompt": "a cat", "messages": []})
    status, headers, body = raw_request(
        stack.proxy, "POST", "/proxy/openai%2Fchat%2Fcompletions%3F/images/generations", auth, images)
    assert status == 400 and orjson.loads(body)["error"]["code"] == "invalid_path"
    status, headers, body = raw_request(stack.proxy, "GET", "/proxy/openai%2Fmodels/files", auth)
    assert status == 400 and orjson.loads(body)["error"]["code"] == "invalid_path"
    assert stack.sim_requests() == []
    # Authenticated first: each refusal is a usage record, status 400, nothing charged.
    records = _ingested()
    assert [(r.status_code, r.cost_usd, r.input_tokens) for r in records] == [(400, Decimal(0), 0)] * 2


def test_invalid_path_answers_in_the_callers_format(stack: Stack) -> None:
    status, _, body = raw_request(stack.proxy, "POST", "/proxy/anthropic/v1%2Fmessages",
                                  {"x-api-key": KEY, "anthropic-version": "2023-06-01"}, b"{}")
    assert status == 400
    payload = orjson.loads(body)
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    # Unauthenticated callers are still refused for the key first, and no upstream call is made.
    status, _, body = raw_request(stack.proxy, "POST", "/proxy/%FF/x%2F..", {}, b"{}")
    assert status == 401 and orjson.loads(body)["error"]["type"] == "authentication_error"
    assert stack.sim_requests() == []


def test_what_the_provider_receives_is_the_path_metered(stack: Stack) -> None:
    stack.clear_sim()
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    status, headers, body = raw_request(stack.proxy, "POST", "/proxy/openai/chat/completi%6Fns?trace=1&next=%2Fa",
                                        auth, orjson.dumps(CHAT))
    assert status == 200, body
    [received] = stack.sim_requests()
    assert received["raw_path"] == "/v1/chat/completions?trace=1&next=%2Fa"
    [saved] = _ingested()
    assert saved.operation == "chat" and saved.input_tokens > 0


def test_only_the_models_listing_is_free(stack: Stack) -> None:
    """A GET is free only for the models listing itself, not for a path that merely contains "/models"."""
    stack.clear_sim()
    auth = {"Authorization": f"Bearer {KEY}"}
    assert raw_request(stack.proxy, "GET", "/proxy/openai/models", auth)[0] == 200
    assert raw_request(stack.proxy, "GET", "/proxy/openai/models/gpt-4o-mini", auth)[0] == 200
    status, _, body = raw_request(stack.proxy, "GET", "/proxy/openai/files/models", auth)
    assert status == 403 and orjson.loads(body)["error"]["code"] == "unmetered_route"
    assert [r["path"] for r in stack.sim_requests()] == ["/v1/models", "/v1/models/gpt-4o-mini"]


def test_a_route_in_another_case_is_still_metered(stack: Stack) -> None:
    """A provider that matches paths case-insensitively would answer /Chat/Completions as a chat completion:
    the proxy meters it as one too, even on an account that lets unmetered routes through."""
    stack.account.allow_unmetered_routes = True
    stack.account.save()
    from proxy.services import config_version_bump

    config_version_bump()
    proxy_config_seen()
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for target in ("/proxy/openai/Chat/Completions", "/proxy/openai/V1/CHAT/COMPLETIONS/"):
        raw_request(stack.proxy, "POST", target, auth, orjson.dumps(CHAT))
    assert {r.operation for r in _ingested()} == {"chat"}

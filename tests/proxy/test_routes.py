"""Which routes are metered, free (recorded at $0) or refused, per wire format; and a client base URL that
repeats the endpoint's version segment (`…/proxy/openai/v1`)."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import orjson
import pytest

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.paths import proxy_path_parse, version_dedupe
from proxy.providers import WIRE_FORMATS

from ..support import KEY, Stack, wait_until
from .test_paths import raw_request

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
MESSAGES = [{"role": "user", "content": "How many tokens is this?"}]


def records(count: int) -> list[UsageRecord]:
    """The records of the test's calls, once the ledger has all `count` (the proxy settles just after answering)."""
    wait_until(lambda: usage_ingest(max_seconds=1) >= 0 and UsageRecord.objects.count() >= count, 10)
    return list(UsageRecord.objects.order_by("created_at"))


# --- the route tables -------------------------------------------------------------------------

ROUTES = [
    ("openai", "GET", "/models", "models"),
    ("openai", "GET", "/v1/models/gpt-4o-mini", "models"),
    ("openai", "POST", "/responses/input_tokens", "count_tokens"),
    ("openai", "POST", "/v1/responses/input_tokens/", "count_tokens"),
    ("openai", "POST", "/models", None),
    ("openai", "GET", "/files/models", None),
    ("openai", "GET", "/modelsx", None),
    ("openai", "POST", "/responses/input_tokens/x", None),
    ("openai", "GET", "/responses/input_tokens", None),
    ("anthropic", "POST", "/v1/messages/count_tokens", "count_tokens"),
    ("anthropic", "POST", "/v1/Messages/Count_Tokens", "count_tokens"),
    ("anthropic", "GET", "/v1/models", "models"),
    ("anthropic", "POST", "/v1/messages/batches", None),
    ("anthropic", "GET", "/v1/messages/count_tokens", None),
    ("azure-openai", "GET", "/openai/v1/models", "models"),
    ("azure-openai", "GET", "/openai/models?api-version=2024-10-21", "models"),
    ("azure-openai", "GET", "/models", None),
    ("azure-openai", "POST", "/openai/v1/models", None),
]


@pytest.mark.parametrize(("wire", "method", "path", "free"), ROUTES)
def test_free_routes_are_named_per_wire_format(wire: str, method: str, path: str, free: str | None) -> None:
    fmt = WIRE_FORMATS[wire]
    assert fmt.free_operation(method, path) == free
    if free is not None:
        assert fmt.operation_for(method, path) is None  # free and metered never overlap


# --- free routes end to end ---------------------------------------------------------------------

def test_anthropic_count_tokens_is_free_not_refused(stack: Stack) -> None:
    """Libraries call count_tokens to size prompts; Anthropic bills nothing for it, and neither does the proxy."""
    client = anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)
    counted = client.messages.with_raw_response.count_tokens(model="claude-sonnet-4-5", messages=MESSAGES)
    assert counted.parse().input_tokens > 0
    assert counted.headers["x-tokonomics-cost-usd"] == "0.000000000"
    listing = client.models.list()
    assert listing.data
    assert [(r.operation, r.cost_usd, r.status_code, r.input_tokens) for r in records(2)] == [
        ("count_tokens", Decimal(0), 200, 0), ("models", Decimal(0), 200, 0)]
    assert stack.account.allow_unmetered_routes is False


def test_openai_input_tokens_counting_is_free(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY, max_retries=0)
    counted = client.responses.input_tokens.count(model="gpt-4o-mini", input="How many tokens is this?")
    assert counted.input_tokens > 0
    [saved] = records(1)
    assert (saved.operation, saved.cost_usd, saved.status_code) == ("count_tokens", Decimal(0), 200)


def test_routes_neither_metered_nor_free_stay_refused(stack: Stack) -> None:
    stack.clear_sim()
    auth = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    status, _, body = raw_request(stack.proxy, "POST", "/proxy/anthropic/v1/messages/batches", auth, b"{}")
    assert status == 403 and orjson.loads(body)["error"]["code"] == "unmetered_route"
    assert stack.sim_requests() == []


# --- a base URL ending in the version --------------------------------------------------------

def test_a_client_base_url_ending_in_the_version_reaches_the_same_route(stack: Stack) -> None:
    stack.clear_sim()
    client = openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai/v1", api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**CHAT)
    assert raw.parse().choices
    assert client.models.list().data
    assert [r["path"] for r in stack.sim_requests()] == ["/v1/chat/completions", "/v1/models"]
    chat, models = records(2)
    assert (chat.operation, chat.model) == ("chat", "gpt-4o-mini") and chat.cost_usd > 0
    assert models.operation == "models"


def test_the_version_is_dropped_once_and_only_where_the_base_url_ends_in_it(stack: Stack) -> None:
    stack.clear_sim()
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    # Twice repeated: one is dropped, the other reaches the provider, which has no such route.
    status, _, _ = raw_request(stack.proxy, "POST", "/proxy/openai/v1/v1/chat/completions", auth,
                               orjson.dumps(CHAT))
    assert status == 404
    # Anthropic's base URL has no version: /v1/messages is its own path, unchanged.
    client = anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)
    assert client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES).content
    assert [r["path"] for r in stack.sim_requests()] == ["/v1/v1/chat/completions", "/v1/messages"]


HOSTILE_WITH_VERSION = [
    "/proxy/openai/v1/../v1/chat/completions",
    "/proxy/openai/v1/./chat/completions",
    "/proxy/openai/v1%2Fchat/completions",
    "/proxy/openai/v1%2F..%2Fchat/completions",
    "/proxy/openai/v1//chat/completions",
    "/proxy/openai/%76%31/..%2Fchat/completions",
]


def test_the_version_segment_opens_no_path_bypass(stack: Stack) -> None:
    stack.clear_sim()
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for target in HOSTILE_WITH_VERSION:
        status, _, body = raw_request(stack.proxy, "POST", target, auth, orjson.dumps(CHAT))
        assert status == 400 and orjson.loads(body)["error"]["code"] == "invalid_path", (target, body)
    assert stack.sim_requests() == []


@pytest.mark.parametrize(("raw", "base", "rest", "forwarded"), [
    (b"/proxy/openai/v1/chat/completions", "https://api.openai.com/v1", "/chat/completions", "/chat/completions"),
    (b"/proxy/openai/v1", "https://api.openai.com/v1", "/", "/"),
    (b"/proxy/openai/v1/", "https://api.openai.com/v1/", "/", "/"),
    (b"/proxy/g/v1beta/models", "https://x.test/v1beta", "/models", "/models"),
    (b"/proxy/g/v1beta/models", "https://x.test/v1beta/openai", "/v1beta/models", "/v1beta/models"),
    (b"/proxy/openai/v1x/chat", "https://api.openai.com/v1", "/v1x/chat", "/v1x/chat"),
    (b"/proxy/openai/V1/chat", "https://api.openai.com/v1", "/V1/chat", "/V1/chat"),
    (b"/proxy/openai/v2/chat", "https://api.openai.com/v1", "/v2/chat", "/v2/chat"),
    (b"/proxy/anthropic/v1/messages", "https://api.anthropic.com", "/v1/messages", "/v1/messages"),
    (b"/proxy/local/v1/chat", "http://127.0.0.1:8000", "/v1/chat", "/v1/chat"),
    (b"/proxy/openai/v1/a%20b", "https://api.openai.com/v1", "/a b", "/a%20b"),
])
def test_version_dedupe_drops_the_same_segment_from_both_paths(raw: bytes, base: str, rest: str,
                                                                forwarded: str) -> None:
    target = proxy_path_parse(path=raw.decode(), raw_path=raw)
    version_dedupe(target, base)
    assert (target.rest, target.forwarded, target.problem) == (rest, forwarded, "")


def test_version_dedupe_leaves_a_refused_path_refused() -> None:
    target = proxy_path_parse(path="/proxy/openai/v1/../x", raw_path=b"/proxy/openai/v1/../x")
    version_dedupe(target, "https://api.openai.com/v1")
    assert target.problem and target.rest == target.forwarded == ""

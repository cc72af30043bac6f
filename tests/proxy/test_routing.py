"""Routes through the live proxy (uvicorn, and Daphne for the streams) with the official SDKs: fallbacks on a
refused connection and on 5xx, retries that honour Retry-After within the route's deadline, the circuit
breaker, and what the usage record says of every attempt."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import anthropic
import openai
import pytest

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.models import ProviderEndpoint, Route

from ..support import KEY, SERVERS, Stack, proxy_served_by, wait_until
from ..support import ingested_record as record

MESSAGES = [{"role": "user", "content": "hi"}]


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def route(stack: Stack, name: str, targets: list[dict], **fields: object) -> Route:
    return Route.objects.create(account=stack.account, name=name, targets=targets, **fields)


def dead_endpoint(stack: Stack) -> ProviderEndpoint:
    endpoint = ProviderEndpoint(account=stack.account, slug="dead", wire_format="openai",
                                base_url=f"http://127.0.0.1:{closed_port()}/v1", pricing_provider="openai")
    endpoint.set_credential("sk-dead")
    endpoint.save()
    return endpoint


@pytest.fixture(params=SERVERS)
def proxy_url(request: pytest.FixtureRequest, stack: Stack) -> Iterator[str]:
    yield from proxy_served_by(request.param, stack.proxy)


def openai_client(proxy: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy}/proxy/openai", api_key=KEY, max_retries=0, timeout=10)


def anthropic_client(proxy: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{proxy}/proxy/anthropic", api_key=KEY, max_retries=0, timeout=10)


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_connection_falls_back_to_the_next_target_at_once(stack: Stack, proxy_url: str,
                                                                    stream: bool) -> None:
    dead_endpoint(stack)
    route(stack, "support-default", [{"endpoint": "dead", "model": "gpt-4o"},
                                     {"endpoint": "openai", "model": "gpt-4o-mini"}])
    client = openai_client(proxy_url)
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model="support-default", messages=MESSAGES, max_tokens=16, stream=True,
            stream_options={"include_usage": True},
        )
        request_id = raw.headers["x-tokonomics-request-id"]
        chunks = list(raw.parse())
        assert chunks[-1].usage is not None and chunks[0].model == "gpt-4o-mini"
    else:
        raw = client.chat.completions.with_raw_response.create(model="support-default", messages=MESSAGES,
                                                               max_tokens=16)
        request_id = raw.headers["x-tokonomics-request-id"]
        assert raw.parse().model == "gpt-4o-mini"
        assert float(raw.headers["x-tokonomics-cost-usd"]) > 0
    saved = record(request_id)
    assert (saved.route, saved.requested_model, saved.model, saved.provider) == (
        "support-default", "support-default", "gpt-4o-mini", "openai")
    assert [a["outcome"] for a in saved.attempts] == ["refused", "ok"]
    assert [a["target"] for a in saved.attempts] == ["dead/gpt-4o", "openai/gpt-4o-mini"]
    assert saved.attempts[0]["ms"] < 200  # generous: a refused connection is a loopback RST (report: measured)
    print(f"MEASURE refused attempt {saved.attempts[0]['ms']} ms, whole routed call {saved.latency_ms} ms")
    assert saved.cost_usd > 0 and saved.status_code == 200 and saved.streamed is stream


@pytest.mark.parametrize("stream", [False, True])
def test_a_5xx_falls_back_with_the_anthropic_sdk(stack: Stack, stream: bool) -> None:
    route(stack, "claude-route", [{"endpoint": "anthropic", "model": "claude-3-5-sonnet-latest"},
                                  {"endpoint": "anthropic", "model": "claude-3-5-haiku-latest"}], retries=0)
    client = anthropic_client(stack.proxy)
    failing = {"X-Sim-Status": "529", "X-Sim-Fail-Model": "claude-3-5-sonnet-latest"}
    if stream:
        raw = client.messages.with_raw_response.create(
            model="claude-route", max_tokens=16, messages=MESSAGES, stream=True, extra_headers=failing,
        )
        request_id = raw.headers["x-tokonomics-request-id"]
        events = list(raw.parse())
        assert events[0].message.model == "claude-3-5-haiku-latest"
    else:
        raw = client.messages.with_raw_response.create(model="claude-route", max_tokens=16, messages=MESSAGES,
                                                       extra_headers=failing)
        request_id = raw.headers["x-tokonomics-request-id"]
        assert raw.parse().model == "claude-3-5-haiku-latest"
    saved = record(request_id)
    assert [(a["target"], a["outcome"]) for a in saved.attempts] == [
        ("anthropic/claude-3-5-sonnet-latest", "529"), ("anthropic/claude-3-5-haiku-latest", "ok")]
    assert saved.model == "claude-3-5-haiku-latest" and saved.cost_usd > 0


def test_a_429_retry_waits_what_retry_after_says(stack: Stack) -> None:
    route(stack, "gpt-4o-mini", [{"endpoint": "openai", "model": "gpt-4o-mini"}], retries=2)
    client = openai_client(stack.proxy)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=4)  # warm: directory, pool
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=16,
        extra_headers={"X-Sim-Status": "429", "X-Sim-Fail-Times": "1", "X-Sim-Fail-Key": uuid.uuid4().hex,
                       "X-Sim-Retry-After": "1"},
    )
    waited = time.monotonic() - started
    assert raw.http_response.status_code == 200
    assert 0.9 <= waited <= 1.5, waited
    print(f"MEASURE Retry-After: 1 → the call took {waited:.3f} s")
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert [a["outcome"] for a in saved.attempts] == ["429", "ok"]
    assert saved.route == "gpt-4o-mini" and saved.requested_model == "gpt-4o-mini"


def test_a_retry_after_past_the_deadline_is_not_waited_for(stack: Stack) -> None:
    route(stack, "gpt-4o-mini", [{"endpoint": "openai", "model": "gpt-4o-mini"}], retries=3, deadline_seconds=10)
    client = openai_client(stack.proxy)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=16,
                                       extra_headers={"X-Sim-Status": "429", "X-Sim-Retry-After": "30"})
    assert time.monotonic() - started < 5  # neither the 30 s asked for nor the 10 s deadline
    # The provider's own error, in the client's format, with its Retry-After.
    assert refused.value.response.headers["retry-after"] == "30"
    saved = record(refused.value.response.headers["x-tokonomics-request-id"])
    assert [a["outcome"] for a in saved.attempts] == ["429"]
    assert saved.status_code == 429 and saved.cost_usd == 0


def test_every_target_failing_passes_the_last_error_on(stack: Stack) -> None:
    route(stack, "support-default", [{"endpoint": "openai", "model": "gpt-4o"},
                                     {"endpoint": "vllm-internal", "model": "gpt-4o-mini"}],
          retries=1, backoff_ms=10, max_attempts=3)
    client = openai_client(stack.proxy)
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="support-default", messages=MESSAGES, max_tokens=16,
                                       extra_headers={"X-Sim-Status": "503"})
    assert failed.value.status_code == 503
    saved = record(failed.value.response.headers["x-tokonomics-request-id"])
    # The attempt limit (3) counts retries and fallbacks together.
    assert [(a["target"], a["outcome"]) for a in saved.attempts] == [
        ("openai/gpt-4o", "503"), ("openai/gpt-4o", "503"), ("vllm-internal/gpt-4o-mini", "503")]


def test_a_target_that_keeps_failing_is_skipped_for_a_cool_down(stack: Stack) -> None:
    dead_endpoint(stack)
    route(stack, "support-default", [{"endpoint": "dead", "model": "gpt-4o"},
                                     {"endpoint": "openai", "model": "gpt-4o-mini"}])
    client = openai_client(stack.proxy)
    for _ in range(5):  # FAILURES_TO_OPEN refused attempts open the breaker, in Redis, for every worker
        client.chat.completions.create(model="support-default", messages=MESSAGES, max_tokens=4)
    last_id = ""

    def skipped() -> bool:
        nonlocal last_id
        raw = client.chat.completions.with_raw_response.create(model="support-default", messages=MESSAGES,
                                                               max_tokens=4)
        last_id = raw.headers["x-tokonomics-request-id"]
        # The open target goes last: the healthy one answers first, and the dead one is not tried at all.
        return [a["target"] for a in record(last_id).attempts] == ["openai/gpt-4o-mini"]
    wait_until(skipped, 5, interval=0.1)


def test_a_call_naming_no_route_is_forwarded_as_before(stack: Stack) -> None:
    route(stack, "support-default", [{"endpoint": "openai", "model": "gpt-4o-mini"}])
    raw = openai_client(stack.proxy).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=4)
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert (saved.route, saved.requested_model, saved.attempts, saved.routing_saved_usd) == ("", "", [], None)


def test_the_demo_traffic_starts_with_a_fallback_and_a_routing_saving(stack: Stack) -> None:
    import io

    from django.core.management import call_command

    route(stack, "support-default", [{"endpoint": "openai", "model": "gpt-4o"},
                                     {"endpoint": "vllm-internal", "model": "gpt-4o-mini"}])
    route(stack, "cheap-chat", [{"endpoint": "openai", "model": "gpt-4o"},
                                {"endpoint": "openai", "model": "gpt-4o-mini"}], strategy="lowest-cost")
    errors = io.StringIO()
    call_command("demotraffic", site=stack.proxy, key=KEY, interval=0, count=2, stderr=errors)
    assert errors.getvalue() == ""
    deadline = time.monotonic() + 5
    while UsageRecord.objects.count() < 2:
        assert time.monotonic() < deadline
        usage_ingest(max_seconds=0.2)
    fallback, cheap = UsageRecord.objects.order_by("request_id")
    # gpt-4o answers 503 (retried once, as the route's policy says), then gpt-4o-mini serves the call.
    assert [(a["target"], a["outcome"]) for a in fallback.attempts] == [
        ("openai/gpt-4o", "503"), ("openai/gpt-4o", "503"), ("vllm-internal/gpt-4o-mini", "ok")]
    assert fallback.status_code == 200
    assert cheap.route == "cheap-chat" and cheap.model == "gpt-4o-mini" and cheap.routing_saved_usd > 0


def test_a_target_that_does_not_answer_in_its_timeout_falls_back(stack: Stack) -> None:
    route(stack, "support-default", [{"endpoint": "openai", "model": "gpt-4o", "timeout_seconds": 0.3},
                                     {"endpoint": "vllm-internal", "model": "gpt-4o-mini"}], retries=0)
    started = time.monotonic()
    raw = openai_client(stack.proxy).chat.completions.with_raw_response.create(
        model="support-default", messages=MESSAGES, max_tokens=8,
        extra_headers={"X-Sim-Latency-Ms": "15000", "X-Sim-Slow-Model": "gpt-4o"})
    took = time.monotonic() - started
    assert raw.parse().model == "gpt-4o-mini"
    assert 0.3 <= took < 8.0, took  # the slow target's 15 s are not waited for
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert [(a["target"], a["outcome"]) for a in saved.attempts] == [("openai/gpt-4o", "timeout"),
                                                                     ("vllm-internal/gpt-4o-mini", "ok")]
    assert 250 <= saved.attempts[0]["ms"] < 1000

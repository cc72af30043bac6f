"""OpenTelemetry traces (proxy/tracing.py): a proxy process under uvicorn exports its spans over OTLP/HTTP to a
local receiver, which decodes them as a collector would; the simulator shows what the provider received."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from billing.models import Budget
from tokonomics.settings import otlp_traces_endpoint

from ..support import KEY, ProxyProcess, make_account, make_key, wait_until

PROMPT = "the zebra ledger of Quetzalcoatl"


class Receiver:
    """An OTLP/HTTP trace receiver on a loopback port: POST /v1/traces, protobuf, kept as decoded."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []  # (resource attributes, span)
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    resource = attributes_of(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend((resource, span) for span in scope_spans.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def span(self, request_id: str, timeout: float = 10) -> tuple[dict[str, Any], Span]:
        def found() -> tuple[dict[str, Any], Span] | None:
            return next(((resource, span) for resource, span in self.spans
                         if attributes_of(span.attributes).get("tokonomics.request_id") == request_id), None)

        wait_until(found, timeout, interval=0.05, message=f"no span for {request_id}")
        result = found()
        assert result is not None
        return result


def attributes_of(key_values: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in key_values:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind) if kind else None
    return values


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def account(transactional_db, simulator, plans):
    account = make_account("acme", simulator, plans["pro"])
    make_key(account, KEY, name="billing-bot")
    Budget.objects.create(account=account, scope="tenant", match="capped", period="month",
                          limit_usd=Decimal("0.000001"), hard=True)
    return account


def traced_proxy(receiver: Receiver, *, schedule_delay_ms: int) -> ProxyProcess:
    # OTEL_BSP_SCHEDULE_DELAY is the batch processor's own variable (how often it exports), read by the SDK.
    return ProxyProcess(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY=str(schedule_delay_ms),
                        OTEL_SERVICE_NAME="proxy-under-test")


def client_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def post(proxy: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(f"{proxy}/proxy/openai/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {KEY}", **headers})


def test_spans_carry_the_genai_attributes_continue_the_clients_trace_and_hold_no_content(
    receiver: Receiver, account, simulator: str
) -> None:
    httpx.delete(f"{simulator}/_sim/requests")
    chat = {"model": "gpt-4o-mini", "max_tokens": 12, "messages": [{"role": "user", "content": PROMPT}]}
    replies: list[str] = []
    with traced_proxy(receiver, schedule_delay_ms=100) as proxy:
        trace_json, parent_json, header_json = client_traceparent()
        answer = post(proxy.url, chat, traceparent=header_json, **{"X-Tenant-ID": "t-7", "X-Feature-Name": "search",
                                                                    "X-Environment": "staging"})
        assert answer.status_code == 200
        replies.append(answer.json()["choices"][0]["message"]["content"])

        trace_stream, parent_stream, header_stream = client_traceparent()
        stream_headers = {"Authorization": f"Bearer {KEY}", "traceparent": header_stream}
        with httpx.stream("POST", f"{proxy.url}/proxy/openai/chat/completions", json={**chat, "stream": True},
                          headers=stream_headers, timeout=10) as streamed:
            assert streamed.status_code == 200
            stream_id = streamed.headers["x-tokonomics-request-id"]
            for line in streamed.iter_lines():
                if line.startswith("data: {"):
                    for choice in orjson.loads(line[6:])["choices"]:
                        replies.append(choice["delta"].get("content") or "")

        denied = post(proxy.url, chat, **{"X-Tenant-ID": "capped"})  # no traceparent: a trace of its own
        assert denied.status_code == 429
        failed = post(proxy.url, chat, **{"X-Sim-Status": "500"})
        assert failed.status_code == 500
        trace_unsampled, _, header_unsampled = client_traceparent()
        unsampled = post(proxy.url, chat, traceparent=header_unsampled[:-2] + "00")  # the client records nothing
        assert unsampled.status_code == 200

        resource, json_span = receiver.span(answer.headers["x-tokonomics-request-id"])
        _, stream_span = receiver.span(stream_id)
        _, denied_span = receiver.span(denied.headers["x-tokonomics-request-id"])
        _, failed_span = receiver.span(failed.headers["x-tokonomics-request-id"])
    assert set(receiver.paths) == {"/v1/traces"}
    assert resource["service.name"] == "proxy-under-test"

    # The client's trace goes on: our span's parent is the client's, and the provider's parent is our span.
    sent = {entry["headers"].get("traceparent") for entry in httpx.get(f"{simulator}/_sim/requests").json()}
    for span, trace_id, parent_id in ((json_span, trace_json, parent_json), (stream_span, trace_stream, parent_stream)):
        assert (span.trace_id.hex(), span.parent_span_id.hex()) == (trace_id, parent_id)
        assert f"00-{trace_id}-{span.span_id.hex()}-01" in sent
    assert not denied_span.parent_span_id and len(denied_span.trace_id) == 16
    # A trace the client does not sample is not exported either, and goes on unsampled to the provider.
    assert any(value and value.startswith(f"00-{trace_unsampled}-") and value.endswith("-00") for value in sent)
    assert not [span for _, span in receiver.spans if span.trace_id.hex() == trace_unsampled]

    attributes = attributes_of(json_span.attributes)
    assert json_span.name == "chat gpt-4o-mini" and json_span.kind == Span.SPAN_KIND_CLIENT
    assert json_span.status.code != Status.STATUS_CODE_ERROR
    assert json_span.start_time_unix_nano < json_span.end_time_unix_nano
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"].startswith("gpt-4o-mini")
    assert attributes["gen_ai.request.max_tokens"] == 12
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["tokonomics.cost_usd"] == pytest.approx(float(answer.headers["x-tokonomics-cost-usd"]))
    assert attributes["tokonomics.cost_usd"] > 0
    assert attributes["tokonomics.budget.decision"] == "admitted"
    assert (attributes["tokonomics.tenant"], attributes["tokonomics.feature"]) == ("t-7", "search")
    assert attributes["tokonomics.environment"] == "staging"
    assert (attributes["tokonomics.account"], attributes["tokonomics.key.name"]) == ("acme", "billing-bot")
    assert attributes["http.response.status_code"] == 200 and attributes["tokonomics.streamed"] is False

    streamed_attributes = attributes_of(stream_span.attributes)
    assert streamed_attributes["tokonomics.streamed"] is True
    assert streamed_attributes["gen_ai.usage.output_tokens"] > 0 and streamed_attributes["tokonomics.cost_usd"] > 0

    denial = attributes_of(denied_span.attributes)
    assert denied_span.status.code == Status.STATUS_CODE_ERROR
    assert denial["tokonomics.budget.decision"] == "denied"
    assert denial["tokonomics.budget.denied_scope"] == denial["error.type"] == "tenant_budget"
    assert denial["http.response.status_code"] == 429 and denial["tokonomics.cost_usd"] == 0
    assert denial["tokonomics.budget.reserved_usd"] > 0

    failure = attributes_of(failed_span.attributes)
    assert failed_span.status.code == Status.STATUS_CODE_ERROR and failure["error.type"] == "500"

    # Never content: no prompt, no reply, no key, in any attribute, name or status of any span.
    texts = [str(value) for resource, span in receiver.spans for value in
             (*resource.values(), *attributes_of(span.attributes).values(), span.name, span.status.message)]
    # The prompt's own words, and any three consecutive words of either reply (single words of the simulator's
    # reply, "test" or "budget", are also fair names of other things).
    reply_words = [reply.split() for reply in (replies[0], "".join(replies[1:]))]
    fragments = {" ".join(words[i:i + 3]) for words in reply_words for i in range(len(words) - 2)}
    fragments |= {"zebra", "Quetzalcoatl"}
    assert len(fragments) > 4
    for text in texts:
        assert "mk_" not in text and "sk-upstream" not in text, text
        assert not any(fragment in text for fragment in fragments), text


def test_spans_still_queued_are_exported_when_the_proxy_stops(receiver: Receiver, account) -> None:
    with traced_proxy(receiver, schedule_delay_ms=600_000) as proxy:  # no periodic export during the test
        answer = post(proxy.url, {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user",
                                                                                      "content": "hi"}]})
        assert answer.status_code == 200
        assert not receiver.spans
    # The lifespan's shutdown flushed the batch before the process ended.
    receiver.span(answer.headers["x-tokonomics-request-id"], timeout=1)


def test_a_proxy_without_an_otlp_endpoint_does_not_trace_and_passes_the_clients_traceparent_on(
    account, simulator: str, settings
) -> None:
    httpx.delete(f"{simulator}/_sim/requests")
    _, _, header = client_traceparent()
    with ProxyProcess() as proxy:
        assert post(proxy.url, {"model": "gpt-4o-mini", "max_tokens": 5,
                                "messages": [{"role": "user", "content": "hi"}]}, traceparent=header).status_code == 200
    assert [entry["headers"].get("traceparent") for entry in httpx.get(f"{simulator}/_sim/requests").json()] == [header]


def test_the_traces_endpoint_follows_opentelemetrys_variables() -> None:
    assert otlp_traces_endpoint("", "") == ""
    assert otlp_traces_endpoint("http://collector:4318", "") == "http://collector:4318/v1/traces"
    assert otlp_traces_endpoint("http://collector:4318/", "") == "http://collector:4318/v1/traces"
    assert otlp_traces_endpoint("http://a:4318", "https://b/traces") == "https://b/traces"
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        otlp_traces_endpoint("collector:4318", "")


def test_the_proxys_span_encoding_decodes_as_the_stock_encoders() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState
    from opentelemetry.trace import Status as SpanStatus

    from proxy.span_export import ProxySpanExporter

    resource = Resource.create({"service.name": "tokonomics-proxy"})
    scope = InstrumentationScope("tokonomics.proxy", schema_url="https://opentelemetry.io/schemas/1.37.0")
    exporter = ProxySpanExporter(endpoint="http://127.0.0.1:9/v1/traces", resource=resource, scope=scope)
    assert callable(exporter._client.export)  # the transport the fast path sends with is there
    parent = SpanContext(2**127 + 5, 2**63 + 9, True, TraceFlags(1), TraceState([("vendor", "v=1")]))
    spans = [
        ReadableSpan("chat gpt-4o-mini", SpanContext(2**127 + 5, 77, False, TraceFlags(1), parent.trace_state), parent,
                     resource, {"gen_ai.operation.name": "chat", "tokonomics.tenant": "丁 tenant é", "n": 0,
                                "big": 2**62, "negative": -3, "cost": 0.0000135, "zero": 0.0, "yes": True, "no": False,
                                "long": "x" * 300, "count": 1, "flag": True},
                     kind=SpanKind.CLIENT, start_time=1_700_000_000_000_000_000, end_time=1_700_000_000_123_456_789,
                     instrumentation_scope=scope),
        ReadableSpan("embeddings", SpanContext(1, 2**64 - 1, False, TraceFlags(1)), None, resource, {},
                     kind=SpanKind.CLIENT, status=SpanStatus(StatusCode.ERROR, "tenant_budget"), start_time=1,
                     end_time=2, instrumentation_scope=scope),
        ReadableSpan("proxy", SpanContext(3, 4, False, TraceFlags(1)), None, resource, {"error.type": "500"},
                     kind=SpanKind.CLIENT, status=SpanStatus(StatusCode.ERROR), start_time=5, end_time=6,
                     instrumentation_scope=scope),
    ]
    assert exporter.encoder.encodes(spans)
    for _ in range(2):  # and again, from the encoder's memory of attributes already written
        ours = ExportTraceServiceRequest.FromString(exporter.encoder.request(spans))
        assert ours == encode_spans(spans)
    assert not exporter.encoder.encodes([ReadableSpan("other", spans[0].context, None, Resource.create({}),
                                                      instrumentation_scope=scope)])


def test_a_traceparent_is_read_as_w3c_trace_context_says() -> None:
    from proxy.tracing import _parent

    trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    parent = _parent(f"00-{trace}-{span}-01".encode(), b"vendor=v1,other=x")
    assert parent is not None and (parent.trace_id, parent.span_id) == (int(trace, 16), int(span, 16))
    assert parent.trace_flags.sampled and parent.is_remote and parent.trace_state.get("vendor") == "v1"
    assert _parent(f"cc-{trace}-{span}-00-later-fields".encode(), None) is not None  # a later version
    for bad in (f"00-{trace.upper()}-{span}-01", f"00-{'0' * 32}-{span}-01", f"00-{trace}-{'0' * 16}-01",
                f"ff-{trace}-{span}-01", f"00-{trace}-{span}-01-extra", f"00-{trace}-{span}", "0x-" + "1" * 60,
                f"00-{trace}-{span}-01" + "-x" * 400):
        assert _parent(bad.encode(), None) is None, bad

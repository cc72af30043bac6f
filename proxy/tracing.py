"""OpenTelemetry traces of proxied calls, off unless an OTLP endpoint is configured (settings.OTEL_TRACES_ENDPOINT).

One span per call, named and attributed by the GenAI semantic conventions (`gen_ai.*`) plus the proxy's own
(`tokonomics.*`): the model, the tokens, the cost, the budget decision, the attribution. Never content: no
prompt, no response, no key, no tag, no error message — only names, counts and codes.

A call's span continues the client's trace (its W3C `traceparent`) and the request to the provider carries
ours, so the provider's side hangs under the proxy's. The span is started with the instant the call was
accepted and ended when the call is settled; a batch processor exports from its own thread, so the event loop
never waits on tracing. The tracer belongs to the process's ProxyContext, never installed globally.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from django.conf import settings
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .budgets import nanos_to_usd
from .usage_bounds import TEXT_LIMITS, text_clean

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from .gateway import Call
    from .headers import Headers

# The operations of proxy/providers/base.py by their GenAI convention names (gen_ai.operation.name); free and
# unmetered routes keep the proxy's own name.
OPERATION_NAMES = {
    "chat": "chat", "messages": "chat", "responses": "chat", "completions": "text_completion",
    "embeddings": "embeddings", "generate_content": "generate_content",
}
# An endpoint's pricing provider (genai-prices id) by its gen_ai.provider.name well-known value; others
# (OpenRouter, Together, a self-hosted server) keep their own id, else the endpoint's slug.
PROVIDER_NAMES = {
    "openai": "openai", "anthropic": "anthropic", "google": "gcp.gemini", "azure": "azure.ai.openai",
    "deepseek": "deepseek", "mistral": "mistral_ai", "groq": "groq", "perplexity": "perplexity",
}
_PROPAGATOR = TraceContextTextMapPropagator()
_NO_PARENT = Context()  # never the caller's current context: a span's parent is the client's traceparent or none


class _AsgiHeaders(Getter["Headers"]):
    """The W3C headers read straight from the ASGI headers (lower-case bytes names, latin-1 values)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        value = carrier.get(key.encode("latin-1"))
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier: Headers) -> list[str]:
        return [name.decode("latin-1") for name in carrier]


_HEADERS = _AsgiHeaders()


class Tracing:
    """The process's tracer and the batch exporter behind it (one per ProxyContext)."""

    def __init__(self, *, endpoint: str, service_name: str) -> None:
        # ParentBased: a client's sampling decision is kept (a trace it does not record, the proxy does not
        # either); a call without traceparent starts a sampled trace of its own.
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                       sampler=ParentBased(ALWAYS_ON))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self.tracer = self.provider.get_tracer("tokonomics.proxy")

    def span_start(self, *, call: Call, headers: Headers) -> Span:
        """The call's span, from the instant it was accepted, under the client's trace when it sent one."""
        parent = _PROPAGATOR.extract(headers, _NO_PARENT, _HEADERS) if b"traceparent" in headers else _NO_PARENT
        return self.tracer.start_span("proxy", parent, SpanKind.CLIENT, start_time=int(call.created_at * 1e9))

    async def close(self) -> None:
        """Export what is still queued: a blocking flush, so off the event loop."""
        await asyncio.to_thread(self.provider.shutdown)


def tracing_start() -> Tracing | None:
    """The process's tracing, or None when no OTLP endpoint is configured."""
    endpoint = settings.OTEL_TRACES_ENDPOINT
    return Tracing(endpoint=endpoint, service_name=settings.OTEL_SERVICE_NAME) if endpoint else None


def traceparent(span: Span) -> str:
    """The W3C traceparent the provider receives: the client's trace (or ours), with our span as its parent."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags & 0x01:02x}"


def span_end(*, span: Span, call: Call, failure: BaseException | None = None) -> None:
    """Name and attribute the call's span from what the call became, and end it. Called as the call's
    handling ends; `failure` is what ended it early (a cut stream, a cancelled call), if anything."""
    if not span.is_recording():  # sampled out by the client: nothing is exported, nothing to describe
        span.end()
        return
    operation = OPERATION_NAMES.get(call.operation, call.operation)
    endpoint = call.endpoint
    if endpoint is not None:
        provider = PROVIDER_NAMES.get(endpoint.pricing_provider) or endpoint.pricing_provider or endpoint.slug
    else:
        provider = text_clean(call.provider, TEXT_LIMITS["provider"])
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the name before semantic conventions 1.37, which tools still read
        "tokonomics.request_id": call.rid,
        "tokonomics.provider": call.provider_label,
        "tokonomics.streamed": call.streamed,
        "tokonomics.environment": call.environment,
    }
    model = ""
    if call.info is not None:
        model = attributes["gen_ai.request.model"] = text_clean(call.info.model, TEXT_LIMITS["model"])
        if call.info.max_output_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = call.info.max_output_tokens
    if call.served_model:
        attributes["gen_ai.response.model"] = text_clean(call.served_model, TEXT_LIMITS["served_model"])
    if call.usage is not None:
        attributes["gen_ai.usage.input_tokens"] = call.usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = call.usage.output_tokens
        attributes["tokonomics.usage_source"] = call.usage_source
    if call.status:
        attributes["http.response.status_code"] = call.status
    if call.cost_usd is not None:
        attributes["tokonomics.cost_usd"] = float(call.cost_usd)
    if call.account is not None:
        attributes["tokonomics.account"] = call.account.slug
        attributes["tokonomics.budget.decision"] = _budget_decision(call)
    if call.key is not None:
        attributes["tokonomics.key.name"] = call.key.name
    if call.denied_scope:
        attributes["tokonomics.budget.denied_scope"] = call.denied_scope
        if call.denied_scope.endswith("_budget"):
            attributes["tokonomics.budget.reserved_usd"] = float(nanos_to_usd(call.estimate_nanos))
    if call.tenant:
        attributes["tokonomics.tenant"] = call.tenant
    if call.feature:
        attributes["tokonomics.feature"] = call.feature
    error = _error_type(call, failure)
    if error:
        attributes["error.type"] = error
    span.set_attributes(attributes)
    span.update_name(f"{operation} {model}" if model else operation or "proxy")
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


def _budget_decision(call: Call) -> str:
    if call.denied_scope:
        return "denied"
    if not call.enforced:
        return "unenforced"  # Redis gave no verdict; the account's policy let the call through
    return "admitted" if call.status else "not_reached"


def _error_type(call: Call, failure: BaseException | None) -> str:
    """The error's kind, never its message: the proxy's refusal code, else what ended the call early, else the
    provider's error status."""
    if call.error_code:
        return call.error_code
    if failure is not None:
        return type(failure).__name__
    return str(call.status) if call.status >= 400 else ""

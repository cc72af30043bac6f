"""OpenTelemetry traces of proxied calls, off unless an OTLP endpoint is configured (settings.OTEL_TRACES_ENDPOINT).

One span per call, named and attributed by the GenAI semantic conventions (`gen_ai.*`) plus the proxy's own
(`tokonomics.*`): the model, the tokens, the cost, the budget decision, the attribution. Never content: no
prompt, no response, no key, no tag, no error message — only names, counts and codes.

A call's span continues the client's trace (its W3C `traceparent`; a trace the client does not sample is not
recorded either) and the request to the provider carries ours, so the provider's side hangs under the proxy's.
The span's ids are drawn when the call is accepted; everything else is known when the call ends, so the span
is recorded then, finished, with the instants the call measured, straight into the SDK's batch processor
(whose thread exports it, span_export.py): no live span, no sampler, no context to attach — the SDK's tracer
and live span cost about 35 µs of CPU a call for nothing the proxy uses. The event loop never waits on
tracing. Everything belongs to the process's ProxyContext, never installed globally.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from .budgets import nanos_to_usd
from .span_export import ProxySpanExporter
from .usage_bounds import TEXT_LIMITS, text_clean

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from .gateway import Call
    from .headers import Headers

# The version of the semantic conventions the attributes follow (gen_ai.provider.name is 1.37's).
SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
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
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.UNSET)


@dataclass(slots=True)
class CallSpan:
    """A call's span while the call goes on: its place in the trace, and when it began."""

    trace_id: int
    span_id: int
    start_ns: int
    parent: SpanContext | None = None  # the client's span, when it sent a traceparent
    sampled: bool = True

    def traceparent(self) -> str:
        """The W3C traceparent the provider receives: this trace, with this span as the parent."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


class Tracing:
    """The process's span pipeline: a batch processor and the OTLP exporter behind it (one per ProxyContext)."""

    def __init__(self, *, endpoint: str, service_name: str) -> None:
        self.resource = Resource.create({"service.name": service_name})
        self.scope = InstrumentationScope("tokonomics.proxy", schema_url=SCHEMA_URL)
        self.processor = BatchSpanProcessor(ProxySpanExporter(endpoint=endpoint, resource=self.resource,
                                                              scope=self.scope))
        # Its thread is a daemon: a process that ends without a lifespan shutdown (Daphne sends none) still
        # exports what is queued. A second shutdown does nothing.
        atexit.register(self.processor.shutdown)

    def span_start(self, *, call: Call, headers: Headers) -> CallSpan:
        """The call's span ids, under the client's trace when it sent one; it starts when the call was accepted."""
        start_ns = int(call.created_at * 1e9)
        raw = headers.get(b"traceparent")
        if raw is not None:
            parent = _parent(raw, headers.get(b"tracestate"))
            if parent is not None:
                return CallSpan(parent.trace_id, _span_id(), start_ns, parent, parent.trace_flags.sampled)
        return CallSpan(random.getrandbits(128) or 1, _span_id(), start_ns)

    def span_end(self, *, span: CallSpan, call: Call, failure: BaseException | None = None) -> None:
        """Record the call's span as the call ends: named and attributed from what the call became; `failure` is
        what ended it early (a cut stream, a cancelled call), if anything. Queued for export, never sent here."""
        if not span.sampled:
            return
        end_ns = time.time_ns()
        attributes, name, error = span_attributes(call, failure)
        parent = span.parent
        trace_state = parent.trace_state if parent is not None else DEFAULT_TRACE_STATE
        self.processor.on_end(ReadableSpan(
            name, SpanContext(span.trace_id, span.span_id, False, _SAMPLED, trace_state), parent, self.resource,
            attributes, kind=SpanKind.CLIENT, status=Status(StatusCode.ERROR, error) if error else _OK,
            start_time=span.start_ns, end_time=max(end_ns, span.start_ns), instrumentation_scope=self.scope,
        ))

    async def close(self) -> None:
        """Export what is still queued: a blocking flush, so off the event loop."""
        await asyncio.to_thread(self.processor.shutdown)


# W3C Trace Context: version-traceid-parentid-flags, lower-case hex; a later version may add fields after them.
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def _parent(raw: bytes, tracestate: bytes | None) -> SpanContext | None:
    """The client's span from its traceparent (and tracestate), None when it is not a valid one. Parsed here,
    as OpenTelemetry's propagator parses it, without building a Context for it."""
    match = _TRACEPARENT.fullmatch(raw.strip()) if len(raw) <= 512 else None
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([tracestate.decode("latin-1")]) if tracestate else DEFAULT_TRACE_STATE
    return SpanContext(trace_id, span_id, True, TraceFlags(int(flags_hex, 16)), state)


def _span_id() -> int:
    return random.getrandbits(64) or 1  # as the SDK draws them; 0 is the invalid span id


def tracing_start() -> Tracing | None:
    """The process's tracing, or None when no OTLP endpoint is configured."""
    endpoint = settings.OTEL_TRACES_ENDPOINT
    return Tracing(endpoint=endpoint, service_name=settings.OTEL_SERVICE_NAME) if endpoint else None


def span_attributes(call: Call, failure: BaseException | None) -> tuple[dict[str, AttributeValue], str, str]:
    """The span's attributes, its name and its error type ("" when the call did not fail)."""
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
        attributes["tokonomics.environment"] = call.environment
    if decision := _budget_decision(call):
        attributes["tokonomics.budget.decision"] = decision
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
    return attributes, f"{operation} {model}" if model else operation or "proxy", error


def _budget_decision(call: Call) -> str:
    """denied (a budget, a rate limit, the plan's limit), unenforced (Redis gave no verdict and the account's
    policy let the call through), admitted (forwarded); "" for a call refused before admission."""
    if call.denied_scope:
        return "denied"
    if call.error_code == "enforcement_unavailable":
        return "unavailable"  # Redis gave no verdict and the account's policy refused the call
    if call.overhead_seconds == 0.0:
        return ""  # never forwarded (forward measures the overhead before it calls the provider)
    return "admitted" if call.enforced else "unenforced"


def _error_type(call: Call, failure: BaseException | None) -> str:
    """The error's kind, never its message: the proxy's refusal code, else what ended the call early, else the
    provider's error status."""
    if call.error_code:
        return call.error_code
    if failure is not None:
        return type(failure).__name__
    return str(call.status) if call.status >= 400 else ""


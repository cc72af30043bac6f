"""The OTLP/HTTP exporter of the proxy's spans: OpenTelemetry's own (its transport: endpoint, headers, TLS,
compression, retries), with the request body encoded here.

The stock encoder builds a protobuf message object per attribute, about 70 µs of CPU per span of twenty
attributes; a proxied call costs a few hundred. The proxy's spans are flat (scalar attributes, no events, no
links, one resource and scope), so their OTLP protobuf is written directly: the resource and scope once, with
the protobuf classes, then each span's fields as bytes (a few µs). Anything else — a span that is not one of
ours, an exporter without the transport this was written against — goes through the stock export, so the
spans still arrive, only slower. tests/proxy/test_tracing.py checks that both encodings decode the same.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

# opentelemetry/proto/trace/v1/trace.proto: each field's tag byte(s), (number << 3) | wire type.
_SPAN_KINDS = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4,
               SpanKind.CONSUMER: 5}
_FLAGS_HAS_IS_REMOTE, _FLAGS_IS_REMOTE = 0x100, 0x200
_SMALL = [bytes((n,)) for n in range(128)]
_KNOWN_ATTRIBUTES = 4096
_DOUBLE, _FIXED64, _FIXED32 = struct.Struct("<d"), struct.Struct("<Q"), struct.Struct("<I")


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


class SpanEncoder:
    """ExportTraceServiceRequest bytes for spans of one resource and scope with scalar attributes."""

    def __init__(self, *, resource: Resource, scope: InstrumentationScope) -> None:
        self.resource, self.scope = resource, scope
        # ResourceSpans.resource (1) and ScopeSpans.scope (1), encoded once by the stock encoder.
        sample = encode_spans([ReadableSpan("", SpanContext(1, 1, False), None, resource, instrumentation_scope=scope,
                                            start_time=0, end_time=0)]).resource_spans[0]
        self._resource_field = _delimited(b"\x0a", sample.resource.SerializeToString())
        self._resource_schema = _delimited(b"\x1a", resource.schema_url.encode()) if resource.schema_url else b""
        self._scope_field = _delimited(b"\x0a", sample.scope_spans[0].scope.SerializeToString())
        self._scope_schema = _delimited(b"\x1a", scope.schema_url.encode()) if scope.schema_url else b""
        # Text and boolean attributes already written, by (name, value): most repeat from call to call (the
        # operation, the provider, the model, the account, the tenant…). Numbers (counts, costs) are written anew:
        # they vary, and 1 == True would mix them up with booleans in a dict.
        self._attributes: dict[tuple[str, object], bytes] = {}
        self._keys: dict[str, bytes] = {}  # a number's KeyValue up to its value: key (1), then value's tag (2)

    def encodes(self, spans: Sequence[ReadableSpan]) -> bool:
        return all(span.resource is self.resource and span.instrumentation_scope is self.scope and not span.events
                   and not span.links for span in spans)

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        scope_spans = self._scope_field + b"".join(_delimited(b"\x12", self.span(span)) for span in spans)
        resource_spans = self._resource_field + _delimited(b"\x12", scope_spans + self._scope_schema)
        return _delimited(b"\x0a", resource_spans + self._resource_schema)

    def span(self, span: ReadableSpan) -> bytes:
        context, parent = span.context, span.parent
        assert context is not None and span.start_time is not None and span.end_time is not None
        parts = [b"\x0a\x10" + context.trace_id.to_bytes(16, "big"), b"\x12\x08" + context.span_id.to_bytes(8, "big")]
        if context.trace_state:
            parts.append(_delimited(b"\x1a", ",".join(f"{k}={v}" for k, v in context.trace_state.items()).encode()))
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        parts += (_delimited(b"\x2a", span.name.encode()), b"\x30" + _SMALL[_SPAN_KINDS[span.kind]],
                  b"\x39" + _FIXED64.pack(span.start_time), b"\x41" + _FIXED64.pack(span.end_time))
        known, keys = self._attributes, self._keys
        for name, value in (span.attributes or {}).items():
            if value.__class__ is str or value.__class__ is bool:
                field = known.get((name, value))
                if field is None:
                    if len(known) >= _KNOWN_ATTRIBUTES:
                        known.clear()  # a bound: request ids, tenants and features are many
                    field = known[(name, value)] = _attribute(name, value)
                parts.append(field)
            else:
                key = keys.get(name)
                if key is None:
                    key = keys[name] = _delimited(b"\x0a", name.encode()) + b"\x12"
                parts.append(_delimited(b"\x4a", key + _number(value)))
        status = span.status
        code = status.status_code.value
        parts.append(_delimited(b"\x7a", (_delimited(b"\x12", status.description.encode()) if status.description
                                          else b"") + (b"\x18" + _SMALL[code] if code else b"")))
        flags = _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if parent is not None and parent.is_remote else 0)
        parts.append(b"\x85\x01" + _FIXED32.pack(flags))
        return b"".join(parts)


def _attribute(name: str, value: object) -> bytes:
    """Span.attributes (9): a KeyValue of key (1) and value (2)."""
    return _delimited(b"\x4a", _delimited(b"\x0a", name.encode()) + _delimited(b"\x12", _any_value(value)))


def _number(value: object) -> bytes:
    """An AnyValue holding a number, with its length (always under 128 bytes): int_value (3) or double_value (4)."""
    if isinstance(value, int):
        encoded = b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: a negative is its two's complement
    elif isinstance(value, float):
        encoded = b"\x21" + _DOUBLE.pack(value)
    else:
        raise TypeError(f"a span attribute of type {type(value).__name__} is not encoded here")
    return _SMALL[len(encoded)] + encoded


def _any_value(value: object) -> bytes:
    """AnyValue: string_value (1), bool_value (2), int_value (3), double_value (4)."""
    if isinstance(value, str):
        return _delimited(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: a negative is its two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    raise TypeError(f"a span attribute of type {type(value).__name__} is not encoded here")


class ProxySpanExporter(OTLPSpanExporter):
    """OpenTelemetry's OTLP/HTTP span exporter, sending the proxy's spans as SpanEncoder writes them."""

    def __init__(self, *, endpoint: str, resource: Resource, scope: InstrumentationScope) -> None:
        super().__init__(endpoint=endpoint)
        self.encoder = SpanEncoder(resource=resource, scope=scope)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client: Any = getattr(self, "_client", None)  # the transport of opentelemetry-exporter-otlp-proto-http 1.45
        if self._shutdown or not callable(getattr(client, "export", None)) or not self.encoder.encodes(spans):
            return super().export(spans)
        try:
            body = self.encoder.request(spans)
        except TypeError:
            return super().export(spans)
        return SpanExportResult.SUCCESS if client.export(body).success else SpanExportResult.FAILURE

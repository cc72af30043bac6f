"""What every wire format shares: the request summary, the errors, the stream reader, SSE helpers.

A wire format (`WireFormat`) is one family of provider APIs: "openai" (OpenAI and every
OpenAI-compatible server) or "anthropic". It answers the proxy's questions about a call —
which operation a route is, what a request asks for, how many tokens a response used — and
hands out a `StreamReader` that meters a streamed response while the proxy forwards it.

Everything here runs on the proxy's hot path for every request: no network, no Django, and a
streamed chunk is never JSON-decoded unless a cheap byte search says it may carry usage.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import orjson

from proxy.usage import TokenUsage

from ..usage_bounds import MAX_TOKENS

# Fixed input-token charge of a non-text part (image, audio, file): close to what a
# mid-sized image costs with OpenAI and Anthropic alike.
MEDIA_TOKENS = 1000
# Every text counts ceil(UTF-8 bytes / 4) tokens: ~4 characters a token for English, and a
# CJK character (3 bytes) counts 3/4 of a token, close to what current tokenizers give it.
BYTES_PER_TOKEN = 4


class Operation(StrEnum):
    """A kind of call the proxy meters."""

    CHAT = "chat"
    COMPLETIONS = "completions"  # legacy /completions, metered like chat
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"
    GENERATE_CONTENT = "generate_content"  # Gemini's generateContent and streamGenerateContent


@dataclass(slots=True)
class RequestInfo:
    """What the proxy needs to know about a request before it calls upstream.

    `model` is the model as requested ("" when absent). `max_output_tokens` is the most output
    the call may produce (`max_tokens` or its equivalents, times the number of choices asked
    for), None when the request sets no limit, 0 for embeddings. `choices` is how many outputs
    the call generates (OpenAI's `n`, `best_of`), each up to the limit or the model's ceiling.
    `body` is what to send upstream: the client's bytes, the very same object, unless the
    proxy had to change them.
    `strip_usage_chunk` says the proxy asked upstream for a usage chunk the client did not ask
    for, so the stream reader must remove it.
    """

    operation: Operation
    model: str
    stream: bool
    max_output_tokens: int | None
    estimated_input_tokens: int
    body: bytes
    strip_usage_chunk: bool = False
    choices: int = 1


class ProviderError(Exception):
    """A request the proxy refuses before calling upstream; the entry point turns it into a response
    with `WireFormat.error_body(status=..., error_type=..., message=..., code=...)`."""

    def __init__(self, status: int, error_type: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code


def load_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or ProviderError 400 invalid_request_error."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProviderError(400, "invalid_request_error", "The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise ProviderError(400, "invalid_request_error", "The request body must be a JSON object.")
    return payload


def decode_json_object(body: bytes) -> dict[str, Any] | None:
    """A response body as a JSON object, or None when it is not one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def route_path(path: str) -> str:
    """`path` without query string, trailing slash or a leading "/v1" (base URLs differ on it), in lower case:
    a provider that matches paths in any case must not get an unmetered chat completion."""
    path = path.partition("?")[0].rstrip("/").lower()
    if path.startswith("/v1/"):
        path = path[3:]
    return path


def model_name(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    return model if isinstance(model, str) else ""


def count(mapping: object, key: str) -> int:
    """A token count from a usage mapping; missing, null or malformed counts are 0."""
    if not isinstance(mapping, dict):
        return 0
    value = mapping.get(key)
    # An upstream is any server an account points an endpoint at: a negative, NaN or astronomic count must
    # not reach the budget scripts, the metrics or the record.
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return 0
    return int(min(value, MAX_TOKENS))


def non_negative_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class InputEstimate:
    """Accumulates what a request sends the model and turns it into an input-token estimate."""

    __slots__ = ("_text_bytes", "_tokens")

    def __init__(self) -> None:
        self._text_bytes = 0
        self._tokens = 0

    def add_text(self, value: object) -> None:
        if isinstance(value, str):
            # isascii() is O(1) on CPython, so plain English never pays for an encode.
            self._text_bytes += len(value) if value.isascii() else len(value.encode())

    def add_json(self, value: object) -> None:
        """Tool definitions, schemas, tool inputs: the model reads them as JSON text."""
        if value:
            self._text_bytes += len(orjson.dumps(value))

    def add_tokens(self, tokens: int) -> None:
        self._tokens += tokens

    def tokens(self) -> int:
        return self._tokens + -(-self._text_bytes // BYTES_PER_TOKEN)


# --- SSE framing -------------------------------------------------------------------------------

# A blank line ends an event; lines may end in \r\n, \n or \r. The atomic groups stop "\r\n"
# from being read as two line endings.
_EVENT_BOUNDARY = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")
_EVENT_ENDINGS = (b"\n\n", b"\r\n\r\n")


def _separator(buffer: bytes) -> bytes | None:
    """The blank-line separator when `buffer` uses one line-ending style throughout, else None."""
    if b"\r" not in buffer:
        return b"\n\n"
    carriage_returns = buffer.count(b"\r")
    if carriage_returns == buffer.count(b"\n") == buffer.count(b"\r\n"):
        return b"\r\n\r\n"
    return None


def complete_events_length(buffer: bytes) -> int:
    """Length of the longest prefix of `buffer` made of whole SSE events (0 when there is none)."""
    separator = _separator(buffer)
    if separator is not None:
        end = buffer.rfind(separator)
        return 0 if end < 0 else end + len(separator)
    length = 0
    for boundary in _EVENT_BOUNDARY.finditer(buffer):
        # A "\r" ending the buffer may be the first half of "\r\n": wait for the next byte.
        if boundary.end() < len(buffer) or not buffer.endswith(b"\r"):
            length = boundary.end()
    return length


def sse_event_spans(region: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each event of `region`, its closing blank line included."""
    start = 0
    for boundary in _EVENT_BOUNDARY.finditer(region):
        yield start, boundary.end()
        start = boundary.end()
    if start < len(region):
        yield start, len(region)


def events_containing(region: bytes, positions: list[int]) -> list[tuple[int, int]]:
    """The spans of the events of `region` (whole events) holding `positions` (ascending), each once."""
    spans: list[tuple[int, int]] = []
    separator = _separator(region)
    if separator is not None:
        for position in positions:
            if spans and position < spans[-1][1]:
                continue
            start = region.rfind(separator, 0, position)
            end = region.find(separator, position)
            spans.append((0 if start < 0 else start + len(separator), len(region) if end < 0 else end + len(separator)))
        return spans
    all_spans = sse_event_spans(region)
    span = next(all_spans, None)
    for position in positions:
        while span is not None and span[1] <= position:
            span = next(all_spans, None)
        if span is None:
            break
        if not spans or spans[-1] != span:
            spans.append(span)
    return spans


def sse_data(event: bytes) -> bytes:
    """The event's data: its `data:` lines joined by "\\n", as the SSE spec assembles them."""
    lines = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines)


def sse_json_object(event: bytes) -> dict[str, Any] | None:
    """The event's data decoded as a JSON object; None for `[DONE]`, pings and anything broken."""
    return decode_json_object(sse_data(event))


# Unescaped quotes are structure in JSON (inside a string they would be \"), so these byte
# patterns find keys without decoding. A string value: "([^"\\]*(?:\\.[^"\\]*)*)".
def json_string_pattern(*keys: str) -> re.Pattern[bytes]:
    """A pattern whose group 1 is the raw (still escaped) string value of any of `keys`."""
    names = "|".join(re.escape(key) for key in keys)
    return re.compile(rf'"(?:{names})"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"'.encode(), re.DOTALL)


_MODEL_VALUE = json_string_pattern("model")
# Reading in batches pays Python's per-call costs once per batch instead of once per chunk.
_READ_BATCH_BYTES = 64 * 1024
_COUNT_BATCH_BYTES = 64 * 1024


class StreamReader:
    """Meters one streamed (SSE) response while the proxy forwards it.

    `feed(chunk)` takes the bytes upstream sent — split anywhere, even inside a line — and
    returns the bytes to send the client now; `close()` ends the stream and returns whatever
    was still held back. Usage, once reported, is in `usage` (normalised) and the model that
    served the call in `served_model`; for a stream cut short (`usage` None after `close()`),
    `estimated_output_tokens()` counts the output from the content seen.

    Unless `strip_usage_chunk` is set, `feed` returns its input, and reading waits until
    `_READ_BATCH_BYTES` have arrived, the stream closes, or `usage` is asked for: the cost
    per chunk is then a list append. With it, whole events are forwarded and an incomplete
    tail held back, so the one event the proxy caused (`_read_usage_event` says which) can
    be removed. Either way output is counted lazily, in batches: a stream that reports its
    usage before `_COUNT_BATCH_BYTES` of it have passed is never counted at all.

    Subclasses set `usage_marker` (bytes that only events which may carry usage contain) and
    `content_pattern` (keys whose string values are output), and implement `_read_usage_event`.
    """

    usage_marker: ClassVar[re.Pattern[bytes]]
    content_pattern: ClassVar[re.Pattern[bytes]]

    def __init__(self, *, strip_usage_chunk: bool = False) -> None:
        self._usage: TokenUsage | None = None
        self._served_model: str | None = None
        self._strip_usage_chunk = strip_usage_chunk
        self._unread: list[bytes] = []  # received, not yet split into events and read
        self._unread_bytes = 0  # counted in pass-through mode only
        self._uncounted: list[bytes] = []  # whole events whose content is not counted yet
        self._uncounted_bytes = 0
        self._content_bytes = 0
        self._content_deltas = 0

    @property
    def usage(self) -> TokenUsage | None:
        self._catch_up()
        return self._usage

    @property
    def served_model(self) -> str | None:
        self._catch_up()
        return self._served_model

    def feed(self, chunk: bytes) -> bytes:
        if not self._strip_usage_chunk:
            self._unread.append(chunk)
            self._unread_bytes += len(chunk)
            if self._unread_bytes >= _READ_BATCH_BYTES:
                self._read_events(self._take_whole_events())
            return chunk
        if not self._unread and chunk.endswith(_EVENT_ENDINGS) and self.usage_marker.search(chunk) is None:
            # The usual chunk: whole events, none of which can be the one to strip.
            self._keep(chunk)
            return chunk
        self._unread.append(chunk)
        return self._read_events(self._take_whole_events())

    def close(self) -> bytes:
        # An event upstream never terminated is still read: the tokens it reports were spent.
        tail = b"".join(self._unread)
        self._unread, self._unread_bytes = [], 0
        forwarded = self._read_events(tail)
        return forwarded if self._strip_usage_chunk else b""

    def estimated_output_tokens(self) -> int:
        """Output tokens of the content seen: ceil(bytes / 4), and at least one per non-empty delta
        (OpenAI streams about a token per chunk, and short tokens would otherwise undercount)."""
        self._catch_up()
        self._count_content()
        return max(-(-self._content_bytes // BYTES_PER_TOKEN), self._content_deltas)

    def _catch_up(self) -> None:
        if self._unread and not self._strip_usage_chunk:
            self._read_events(self._take_whole_events())

    def _take_whole_events(self) -> bytes:
        """Remove and return the whole events at the start of the unread bytes."""
        buffer = self._unread[0] if len(self._unread) == 1 else b"".join(self._unread)
        complete = complete_events_length(buffer)
        if complete == len(buffer):
            self._unread, self._unread_bytes = [], 0
            return buffer
        tail = buffer[complete:]
        self._unread, self._unread_bytes = [tail], len(tail)
        return buffer[:complete]

    def _read_events(self, region: bytes) -> bytes:
        """Read the usage in `region` (whole events) and return it less the event to strip."""
        if not region:
            return region
        forwarded = self._read_usage_events(region)
        self._keep(forwarded)
        return forwarded

    def _keep(self, forwarded: bytes) -> None:
        """Note forwarded events: the served model, and content to count later."""
        if self._served_model is None:
            self._find_served_model(forwarded)
        self._uncounted.append(forwarded)
        self._uncounted_bytes += len(forwarded)
        if self._uncounted_bytes >= _COUNT_BATCH_BYTES:
            self._count_content()

    def _read_usage_events(self, region: bytes) -> bytes:
        first = self.usage_marker.search(region)
        if first is None:
            return region
        positions = [match.start() for match in self.usage_marker.finditer(region, first.start())]
        dropped = [
            (start, end)
            for start, end in events_containing(region, positions)
            if self._read_usage_event(region[start:end])
        ]
        if not dropped:
            return region
        pieces, kept_from = [], 0
        for start, end in dropped:
            pieces.append(region[kept_from:start])
            kept_from = end
        pieces.append(region[kept_from:])
        return b"".join(pieces)

    def _count_content(self) -> None:
        if not self._uncounted:
            return
        region = b"".join(self._uncounted)
        self._uncounted, self._uncounted_bytes = [], 0
        for match in self.content_pattern.finditer(region):
            length = match.end(1) - match.start(1)
            if length:
                self._content_bytes += length
                self._content_deltas += 1

    def _find_served_model(self, region: bytes) -> None:
        # Until an event with usage says otherwise: the first "model" of the stream is the
        # top-level one in every format we read.
        match = _MODEL_VALUE.search(region)
        if match:
            self._served_model = match.group(1).decode(errors="replace")

    def _read_usage_event(self, event: bytes) -> bool:
        """Decode one event `usage_marker` pointed at and take its usage; True to drop it."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class FreeRoute:
    """A route the provider does not bill (a model listing, a token count): forwarded and recorded at $0.

    `route` is matched against `route_path(path)`; one ending in "/" matches every path under it.
    """

    method: str
    route: str
    operation: str  # what the record's `operation` says: "models", "count_tokens"

    def matches(self, method: str, route: str) -> bool:
        if method.upper() != self.method:
            return False
        return route.startswith(self.route) and len(route) > len(self.route) if self.route.endswith("/") \
            else route == self.route


class WireFormat(ABC):
    """How to meter one family of provider APIs. One instance serves every request.

    Every route is one of three kinds (CONTRACT §1, "Routes"): metered (`operation_for` names its
    operation), free (`free_routes`: recorded at $0), or neither, which is refused unless the account
    allows unmetered routes.
    """

    name: ClassVar[str]
    free_routes: ClassVar[tuple[FreeRoute, ...]] = ()

    def free_operation(self, method: str, path: str) -> str | None:
        """The operation of a free route (`free_routes`), None for any other route."""
        route = route_path(path)
        return next((free.operation for free in self.free_routes if free.matches(method, route)), None)

    def path_model(self, path: str) -> str | None:
        """The model a metered route's path names (Azure's deployments), None when the body names it."""
        return None

    @abstractmethod
    def operation_for(self, method: str, path: str) -> Operation | None:
        """The operation `method path` performs; None for a route the proxy cannot meter.

        `path` is what follows /proxy/{provider} ("/chat/completions", "/v1/messages"), with
        or without "/v1" and a query string.
        """

    @abstractmethod
    def parse_request(self, operation: Operation, body: bytes) -> RequestInfo:
        """Read a request body; ProviderError 400 when it is not a JSON object."""

    def request_info(self, operation: Operation, body: bytes, *, path: str) -> RequestInfo:
        """What the proxy reads of a request: its body, and for a format that names the model in the path
        (Gemini's `/models/{model}:generateContent`), its path too."""
        return self.parse_request(operation, body)

    def path_problem(self, path: str) -> str | None:
        """Why a path (canonical, after the slug) is refused as invalid_path in this format, None when it is not:
        a path the proxy cannot be sure how the provider routes."""
        return None

    @abstractmethod
    def usage_from_body(self, operation: Operation, body: bytes) -> tuple[TokenUsage | None, str | None]:
        """(usage, served model) of a non-streamed response; None for what the body lacks."""

    @abstractmethod
    def stream_reader(self, info: RequestInfo) -> StreamReader:
        """A fresh reader for the streamed response to the request `info` describes."""

    def streams(self, info: RequestInfo | None, *, content_type: str, status: int) -> bool:
        """Whether an answer is relayed as a stream, chunk by chunk through `stream_reader`, rather than read
        whole: server-sent events, in every format."""
        return content_type == "text/event-stream"

    @abstractmethod
    def error_body(self, *, status: int, error_type: str, message: str, code: str | None = None) -> bytes:
        """An error response body in this format's shape, so SDKs raise their usual exceptions."""

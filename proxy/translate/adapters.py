"""The seam routing calls: `adapter_for(client_format, target_format, operation)` hands out the
`FormatAdapter` that lets a target of another wire format serve the call.

The adapter's contract with the proxy (what keeps metering honest):

1. `prepare(client_info, model=target_model)` turns the client's request into the target's (`request`),
   or raises `Untranslatable`, and the route skips that target. The translated body is read by the
   TARGET's wire format (`Translation.info`), and sent to `base_url + adapter.target_path` with
   `adapter.upstream_headers(headers)` (proxy/route_forward.py).
2. The answer is metered in the upstream's own format BEFORE it is translated: a body through the
   target's `usage_from_body`, a stream through the target's `stream_reader` (whose output then goes
   through `stream_translator(...).feed`) — proxy/relay.py given a `Translation`. Usage, cost and
   `served_model` are the target's real ones; the translated figures the client sees are never read back.
3. `response(body)` (a 2xx body), `stream_translator(client_info=...)` (a 2xx event stream) and
   `error(status, body)` (any other answer, retryable ones included) give the client its own format: a body
   or an error as JSON (the relay sets the content type), a stream as `text/event-stream`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from proxy.providers import WIRE_FORMATS
from proxy.providers.base import Operation, RequestInfo, WireFormat, decode_json_object

from .base import StreamTranslator, Untranslatable
from .chat_to_messages import chat_to_messages
from .completion_to_message import ChatToMessagesStream, completion_to_message
from .errors import error_to_anthropic, error_to_openai
from .message_to_completion import MessagesToChatStream, message_to_completion
from .messages_to_chat import messages_to_chat

ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class Translation:
    """One call on its way to a target of another format: `info` is the target's request (its body is what
    goes upstream) as the TARGET's wire format reads it, and `wire` meters the answer before `adapter`
    translates it for the client."""

    adapter: FormatAdapter
    wire: WireFormat
    info: RequestInfo
    client_info: RequestInfo


class FormatAdapter(ABC):
    """How a call in `client_format` is served by a target speaking `target_format`. Stateless: one
    instance serves every call; a stream gets its own translator."""

    client_format: ClassVar[str]
    target_format: ClassVar[str]
    target_operation: ClassVar[Operation]
    target_path: ClassVar[str]  # appended to the target endpoint's base URL
    # Headers of the client's format that would confuse (or be refused by) the target's API.
    foreign_header_prefixes: ClassVar[tuple[str, ...]]

    def prepare(self, client_info: RequestInfo, *, model: str) -> Translation:
        """The call translated for `model` at a target of `target_format`; Untranslatable when it cannot be."""
        wire = WIRE_FORMATS[self.target_format]
        info = wire.parse_request(self.target_operation, self.request(client_info.body, model=model))
        return Translation(adapter=self, wire=wire, info=info, client_info=client_info)

    @abstractmethod
    def request(self, body: bytes, *, model: str) -> bytes:
        """The target's request for `model`; Untranslatable when it cannot ask the same faithfully."""

    @abstractmethod
    def response(self, body: bytes) -> bytes:
        """A successful non-streamed answer of the target, in the client's format."""

    @abstractmethod
    def stream_translator(self, *, client_info: RequestInfo) -> StreamTranslator:
        """A fresh translator for the target's event stream answering the call `client_info` describes."""

    @abstractmethod
    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        """An error answer of the target, as (status, body) in the client's format."""

    def upstream_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The headers to send the target: the client's format's own ones removed."""
        return {name: value for name, value in headers.items()
                if not name.lower().startswith(self.foreign_header_prefixes)}


class ChatViaMessages(FormatAdapter):
    """An OpenAI chat-completions call served by an Anthropic Messages model."""

    client_format = "openai"
    target_format = "anthropic"
    target_operation = Operation.MESSAGES
    target_path = "/v1/messages"
    foreign_header_prefixes = ("openai-",)

    def request(self, body: bytes, *, model: str) -> bytes:
        return chat_to_messages(body, model=model)

    def response(self, body: bytes) -> bytes:
        return message_to_completion(body)

    def stream_translator(self, *, client_info: RequestInfo) -> StreamTranslator:
        # A usage chunk the proxy asked for on the client's behalf (strip_usage_chunk) is not the client's.
        payload = decode_json_object(client_info.body) or {}
        options = payload.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        return MessagesToChatStream(include_usage=asked and not client_info.strip_usage_chunk)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return error_to_openai(status, body)

    def upstream_headers(self, headers: dict[str, str]) -> dict[str, str]:
        out = super().upstream_headers(headers)
        if not any(name.lower() == "anthropic-version" for name in out):
            out["anthropic-version"] = ANTHROPIC_VERSION
        return out


class MessagesViaChat(FormatAdapter):
    """An Anthropic Messages call served by an OpenAI (or OpenAI-compatible) chat-completions model."""

    client_format = "anthropic"
    target_format = "openai"
    target_operation = Operation.CHAT
    target_path = "/chat/completions"
    foreign_header_prefixes = ("anthropic-",)

    def request(self, body: bytes, *, model: str) -> bytes:
        return messages_to_chat(body, model=model)

    def response(self, body: bytes) -> bytes:
        return completion_to_message(body)

    def stream_translator(self, *, client_info: RequestInfo) -> StreamTranslator:
        return ChatToMessagesStream()

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return error_to_anthropic(status, body)


_ADAPTERS: dict[tuple[str, str, Operation], FormatAdapter] = {
    ("openai", "anthropic", Operation.CHAT): ChatViaMessages(),
    ("anthropic", "openai", Operation.MESSAGES): MessagesViaChat(),
}


def adapter_for(client_format: str, target_format: str, operation: Operation) -> FormatAdapter | None:
    """The adapter for a call of `operation` in `client_format` served in `target_format`; None when the
    formats are the same (nothing to translate). Untranslatable for a pair no adapter covers (Gemini's
    native API, OpenAI's Responses API, embeddings): the route skips that target."""
    if client_format == target_format:
        return None
    adapter = _ADAPTERS.get((client_format, target_format, operation))
    if adapter is None:
        raise Untranslatable(f"{operation.value} calls in the {client_format} format cannot be served by a "
                             f"{target_format} endpoint")
    return adapter

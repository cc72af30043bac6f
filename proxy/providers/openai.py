"""The OpenAI wire format: OpenAI itself and every OpenAI-compatible server.

Metered routes: POST /chat/completions, /completions (legacy), /responses and /embeddings,
with or without a leading /v1. Usage normalisation (CONTRACT §4):

- chat and completions: prompt_tokens → input (prompt_tokens_details.cached_tokens, or
  DeepSeek's prompt_cache_hit_tokens, → cached); completion_tokens → output, which already
  includes completion_tokens_details.reasoning_tokens;
- Responses: input_tokens (input_tokens_details.cached_tokens) and output_tokens
  (output_tokens_details.reasoning_tokens), streamed in response.completed (or
  response.incomplete / response.failed);
- embeddings: prompt_tokens → input, no output.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import orjson

from proxy.providers.base import (
    MEDIA_TOKENS,
    FreeRoute,
    InputEstimate,
    Operation,
    RequestInfo,
    StreamReader,
    WireFormat,
    count,
    decode_json_object,
    json_string_pattern,
    load_json_object,
    model_name,
    non_negative_int,
    route_path,
    sse_json_object,
)
from proxy.providers.quirks import (
    CACHED_INPUT_PATHS,
    SEPARATE_REASONING_PATHS,
    STREAM_USAGE_PATHS,
    dig,
    provider_cost,
)
from proxy.usage import TokenUsage

# OpenAI's own accounting for chat: every message costs ~4 tokens of framing, and the reply
# is primed with 3 more.
MESSAGE_TOKENS = 4
REPLY_PRIMING_TOKENS = 3
LOW_DETAIL_IMAGE_TOKENS = 85

_ROUTES: dict[str, Operation] = {
    "/chat/completions": Operation.CHAT,
    "/completions": Operation.COMPLETIONS,
    "/responses": Operation.RESPONSES,
    "/embeddings": Operation.EMBEDDINGS,
}
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_IMAGE_PARTS = frozenset({"image_url", "input_image"})
_INCLUDE_USAGE = b'"stream_options":{"include_usage":true},'


# --- usage ---------------------------------------------------------------------------------------


def _quirk_count(usage: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> int:
    for path in paths:
        if path[0] not in usage:
            continue
        found = count(dig(usage, path[:-1]) if len(path) > 1 else usage, path[-1])
        if found:
            return found
    return 0


def chat_usage(usage: dict[str, Any]) -> TokenUsage:
    """Normalise a chat / legacy completions `usage` object (providers' own fields: quirks.py)."""
    prompt = count(usage, "prompt_tokens")
    completion = count(usage, "completion_tokens")
    reasoning = count(usage.get("completion_tokens_details"), "reasoning_tokens")
    cached = count(usage.get("prompt_tokens_details"), "cached_tokens") or _quirk_count(usage, CACHED_INPUT_PATHS)
    # Gemini's and xAI's OpenAI-compatible endpoints leave reasoning out of completion_tokens;
    # their total_tokens gives it away.
    if reasoning and count(usage, "total_tokens") == prompt + completion + reasoning:
        completion += reasoning
    if not reasoning and (separate := _quirk_count(usage, SEPARATE_REASONING_PATHS)):
        reasoning, completion = separate, completion + separate
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=completion,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
        provider_cost_usd=provider_cost(usage),
    )


def responses_usage(usage: dict[str, Any]) -> TokenUsage:
    """Normalise a Responses API `usage` object."""
    return TokenUsage(
        input_tokens=count(usage, "input_tokens"),
        output_tokens=count(usage, "output_tokens"),
        cached_input_tokens=count(usage.get("input_tokens_details"), "cached_tokens"),
        reasoning_tokens=count(usage.get("output_tokens_details"), "reasoning_tokens"),
    )


def embeddings_usage(usage: dict[str, Any]) -> TokenUsage:
    """Normalise an embeddings `usage` object: all input, no output."""
    return TokenUsage(input_tokens=count(usage, "prompt_tokens") or count(usage, "total_tokens"))


_USAGE_READERS: dict[Operation, Callable[[dict[str, Any]], TokenUsage]] = {
    Operation.CHAT: chat_usage,
    Operation.COMPLETIONS: chat_usage,
    Operation.RESPONSES: responses_usage,
    Operation.EMBEDDINGS: embeddings_usage,
}


# --- request ---------------------------------------------------------------------------------------


def _asks_for_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _with_stream_usage(body: bytes, payload: dict[str, Any]) -> bytes | None:
    """`body` asking for the usage chunk; None when its stream_options are not an object."""
    if "stream_options" not in payload:
        # Splice rather than re-serialise: cheaper, and every byte the client sent stays as sent.
        opening = body.index(b"{") + 1
        return body[:opening] + _INCLUDE_USAGE + body[opening:]
    options = payload["stream_options"]
    if options is None:
        options = {}
    elif not isinstance(options, dict):
        return None
    payload["stream_options"] = {**options, "include_usage": True}
    return orjson.dumps(payload)


def _choices(operation: Operation, payload: dict[str, Any]) -> int:
    """How many outputs the request has generated: chat's `n`; for legacy completions the larger of `n` and
    `best_of`, whose candidates are generated (and billed) server-side. Responses and embeddings have none."""
    if operation is Operation.CHAT:
        return non_negative_int(payload.get("n")) or 1
    if operation is Operation.COMPLETIONS:
        return max(non_negative_int(payload.get("n")) or 1, non_negative_int(payload.get("best_of")) or 1)
    return 1


def _max_output_tokens(operation: Operation, payload: dict[str, Any], choices: int) -> int | None:
    if operation is Operation.EMBEDDINGS:
        return 0
    if operation is Operation.RESPONSES:
        return non_negative_int(payload.get("max_output_tokens"))
    limit = None
    if operation is Operation.CHAT:
        limit = non_negative_int(payload.get("max_completion_tokens"))
    if limit is None:
        limit = non_negative_int(payload.get("max_tokens"))
    return None if limit is None else limit * choices


def _image_tokens(part: dict[str, Any]) -> int:
    image = part.get("image_url")
    detail = image.get("detail") if isinstance(image, dict) else part.get("detail")
    return LOW_DETAIL_IMAGE_TOKENS if detail == "low" else MEDIA_TOKENS


def _add_content(estimate: InputEstimate, content: object) -> None:
    """A message's content: a string, or a list of parts (chat and Responses part types)."""
    if isinstance(content, str):
        estimate.add_text(content)
        return
    if not isinstance(content, list):
        return
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            estimate.add_text(part.get("text"))
        elif kind == "refusal":
            estimate.add_text(part.get("refusal"))
        elif kind in _IMAGE_PARTS:
            estimate.add_tokens(_image_tokens(part))
        else:  # audio, files, and whatever comes next
            estimate.add_tokens(MEDIA_TOKENS)


def _add_function_call(estimate: InputEstimate, call: object) -> None:
    if isinstance(call, dict):
        function = call.get("function", call)
        if isinstance(function, dict):
            estimate.add_text(function.get("name"))
            estimate.add_text(function.get("arguments"))


def _add_chat_message(estimate: InputEstimate, message: dict[str, Any]) -> None:
    _add_content(estimate, message.get("content"))
    estimate.add_text(message.get("name"))
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            _add_function_call(estimate, call)
    _add_function_call(estimate, message.get("function_call"))


def _add_prompt(estimate: InputEstimate, prompt: object) -> None:
    """A completions prompt or an embeddings input: text(s) or token array(s)."""
    if isinstance(prompt, str):
        estimate.add_text(prompt)
    elif isinstance(prompt, list) and prompt:
        if isinstance(prompt[0], int):
            estimate.add_tokens(len(prompt))
            return
        for item in prompt:
            if isinstance(item, str):
                estimate.add_text(item)
            elif isinstance(item, list):
                estimate.add_tokens(len(item))


def _add_responses_item(estimate: InputEstimate, item: dict[str, Any]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        _add_content(estimate, item.get("content"))
    elif kind in ("function_call", "custom_tool_call"):
        estimate.add_text(item.get("name"))
        estimate.add_text(item.get("arguments"))
        estimate.add_text(item.get("input"))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        _add_content(estimate, item.get("output"))
    elif kind == "reasoning":
        _add_content(estimate, item.get("summary"))
    elif kind in ("computer_call_output", "image_generation_call"):
        estimate.add_tokens(MEDIA_TOKENS)  # a screenshot or an image, base64 in the JSON
    elif kind != "item_reference":
        estimate.add_json(item)


def _add_responses_input(estimate: InputEstimate, value: object) -> None:
    if isinstance(value, str):
        estimate.add_text(value)
        estimate.add_tokens(MESSAGE_TOKENS)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                _add_responses_item(estimate, item)
                estimate.add_tokens(MESSAGE_TOKENS)


def _add_schema(estimate: InputEstimate, response_format: object) -> None:
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        estimate.add_json(response_format)


def _estimate_input_tokens(operation: Operation, payload: dict[str, Any]) -> int:
    estimate = InputEstimate()
    if operation is Operation.CHAT:
        messages = payload.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if isinstance(message, dict):
                    _add_chat_message(estimate, message)
            estimate.add_tokens(MESSAGE_TOKENS * len(messages) + REPLY_PRIMING_TOKENS)
        estimate.add_json(payload.get("tools"))
        estimate.add_json(payload.get("functions"))
        _add_schema(estimate, payload.get("response_format"))
    elif operation is Operation.RESPONSES:
        _add_responses_input(estimate, payload.get("instructions"))
        _add_responses_input(estimate, payload.get("input"))
        estimate.add_json(payload.get("tools"))
        text = payload.get("text")
        if isinstance(text, dict):
            _add_schema(estimate, text.get("format"))
    elif operation is Operation.COMPLETIONS:
        _add_prompt(estimate, payload.get("prompt"))
        estimate.add_text(payload.get("suffix"))
    else:
        _add_prompt(estimate, payload.get("input"))
    return estimate.tokens()


# --- streams ---------------------------------------------------------------------------------------


# With include_usage every chunk carries "usage":null; only an object is worth decoding.
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


class ChatStreamReader(StreamReader):
    """Chat completions: usage comes on the chunk stream_options.include_usage adds (`choices` is
    `[]`), or, with some OpenAI-compatible servers, on the last chunk that has choices."""

    usage_marker = _USAGE_OBJECT
    content_pattern = json_string_pattern("content", "reasoning_content", "reasoning", "refusal", "arguments", "name")

    def _read_usage_event(self, event: bytes) -> bool:
        chunk = sse_json_object(event)
        if chunk is None:
            return False
        usage = chunk.get("usage")
        if not isinstance(usage, dict):
            # Where some providers put it instead (Groq: x_groq.usage on the last chunk).
            usage = next((found for path in STREAM_USAGE_PATHS if isinstance(found := dig(chunk, path), dict)), None)
            if usage is None:
                return False
        self._usage = chat_usage(usage)
        model = chunk.get("model")
        if isinstance(model, str):
            self._served_model = model
        return self._strip_usage_chunk and chunk.get("choices") == []


class CompletionsStreamReader(ChatStreamReader):
    """Legacy completions: the same chunks, with the text in choices[].text."""

    content_pattern = json_string_pattern("text")


class ResponsesStreamReader(StreamReader):
    """Responses API: usage in the terminal event's `response` (completed, incomplete or failed);
    output text, arguments and reasoning summaries all stream as `delta` strings."""

    usage_marker = _USAGE_OBJECT
    content_pattern = json_string_pattern("delta")

    def _read_usage_event(self, event: bytes) -> bool:
        payload = sse_json_object(event)
        response = payload.get("response") if payload else None
        if isinstance(response, dict) and isinstance(response.get("usage"), dict):
            self._usage = responses_usage(response["usage"])
            model = response.get("model")
            if isinstance(model, str):
                self._served_model = model
        return False


_STREAM_READERS: dict[Operation, type[StreamReader]] = {
    Operation.CHAT: ChatStreamReader,
    Operation.COMPLETIONS: CompletionsStreamReader,
    Operation.RESPONSES: ResponsesStreamReader,
}


class OpenAIWireFormat(WireFormat):
    """OpenAI and OpenAI-compatible APIs (DeepSeek, Gemini, Mistral, Groq, vLLM, …)."""

    name = "openai"
    free_routes: ClassVar[tuple[FreeRoute, ...]] = (
        FreeRoute("GET", "/models", "models"),
        FreeRoute("GET", "/models/", "models"),
        FreeRoute("POST", "/responses/input_tokens", "count_tokens"),
    )

    def operation_for(self, method: str, path: str) -> Operation | None:
        if method.upper() != "POST":
            return None
        return _ROUTES.get(route_path(path))

    def parse_request(self, operation: Operation, body: bytes, *, inject_stream_usage: bool = True) -> RequestInfo:
        """Read a request; for a chat or completions stream that did not ask for usage, ask for it.

        The injected `stream_options.include_usage` keeps the client's other stream options, and
        sets `strip_usage_chunk` so the reader removes the chunk the client never asked for.
        `inject_stream_usage=False` is for servers known to reject stream_options.
        """
        payload = load_json_object(body)
        stream = payload.get("stream") is True
        strip_usage_chunk = False
        if (
            stream
            and inject_stream_usage
            and operation in (Operation.CHAT, Operation.COMPLETIONS)
            and not _asks_for_usage(payload)
        ):
            injected = _with_stream_usage(body, payload)
            if injected is not None:
                body, strip_usage_chunk = injected, True
        choices = _choices(operation, payload)
        return RequestInfo(
            operation=operation,
            model=model_name(payload),
            stream=stream,
            max_output_tokens=_max_output_tokens(operation, payload, choices),
            choices=choices,
            estimated_input_tokens=_estimate_input_tokens(operation, payload),
            body=body,
            strip_usage_chunk=strip_usage_chunk,
        )

    def usage_from_body(self, operation: Operation, body: bytes) -> tuple[TokenUsage | None, str | None]:
        payload = decode_json_object(body)
        if payload is None:
            return None, None
        model = payload.get("model")
        served_model = model if isinstance(model, str) else None
        usage = payload.get("usage")
        if not isinstance(usage, dict):
            return None, served_model
        return _USAGE_READERS.get(operation, chat_usage)(usage), served_model

    def stream_reader(self, info: RequestInfo) -> StreamReader:
        reader_class = _STREAM_READERS.get(info.operation, ChatStreamReader)
        return reader_class(strip_usage_chunk=info.strip_usage_chunk)

    def error_body(self, *, status: int, error_type: str, message: str, code: str | None = None) -> bytes:
        return orjson.dumps({"error": {"message": message, "type": error_type, "param": None, "code": code}})

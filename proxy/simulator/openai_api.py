"""The fake OpenAI API: chat completions, Responses, embeddings and models, in the wire format the
`openai` SDK parses (field for field as api.openai.com sends them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from aiohttp import web

from .call import Call, now
from .content import (
    chat_prompt_tokens,
    completion_prompt_tokens,
    embedding_base64,
    embedding_vector,
    reply_deltas,
    reply_text,
    reply_word_count,
    responses_input_tokens,
    text_input_tokens,
    text_inputs,
    text_tokens,
)
from .controls import Controls
from .errors import JSON, Wire, error_response
from .sse import data_event, named_event
from .tools import argument_deltas, openai_json_content, openai_tool_call

SYSTEM_FINGERPRINT = "fp_5im0k0n0m1c5"
STREAM_DONE = b"data: [DONE]\n\n"
# Streamed chunks carry random-length padding upstream; fixed values keep the simulator deterministic.
OBFUSCATION = ("Xq3", "bT0rK", "m", "Vh8LpZ2", "Jw", "c9QeRf")
MAX_EMBEDDING_DIMENSIONS = 3072
LEGACY_DEFAULT_MAX_TOKENS = 16  # /v1/completions stops at 16 tokens when max_tokens is not given
MODELS = (
    ("gpt-4o-mini", 1721172741, "system"),
    ("gpt-4o", 1715367049, "system"),
    ("gpt-4.1", 1744316542, "system"),
    ("gpt-4.1-mini", 1744318173, "system"),
    ("o4-mini", 1744225351, "system"),
    ("text-embedding-3-small", 1705948997, "system"),
    ("text-embedding-3-large", 1705953180, "system"),
)
MODELS_BODY = orjson.dumps({
    "object": "list",
    "data": [{"id": model, "object": "model", "created": created, "owned_by": owner}
             for model, created, owner in MODELS],
})


def missing_parameter(call: Call, *names: str) -> web.Response | None:
    for name in names:
        if name not in call.payload:
            if name == "model":
                return error_response(Wire.OPENAI, 400, "you must provide a model parameter")
            return error_response(Wire.OPENAI, 400, f"Missing required parameter: '{name}'.", param=name,
                                  code="missing_required_parameter")
    return None


def chat_usage(prompt_tokens: int, words: int, controls: Controls) -> dict[str, Any]:
    """Cached tokens are part of the prompt and reasoning tokens part of the completion, as OpenAI counts them."""
    prompt = prompt_tokens + controls.cached_tokens
    completion = words + controls.reasoning_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": controls.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": controls.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# --- chat completions -------------------------------------------------------------------------

async def chat_completions(call: Call) -> web.StreamResponse:
    if error := missing_parameter(call, "model", "messages"):
        return error
    payload = call.payload
    limit = payload.get("max_completion_tokens", payload.get("max_tokens"))
    words = reply_word_count(limit, call.controls.words)
    finish_reason = "length" if words < call.controls.words else "stop"
    completion_id = call.state.new_id("chatcmpl-")
    message: dict[str, Any] = {"role": "assistant", "content": reply_text(words, call.controls.reply),
                               "refusal": None, "annotations": []}
    deltas: Iterable[dict[str, Any]] = ({"content": delta} for delta in reply_deltas(words, call.controls.reply))
    output_tokens = words
    if tool_call := openai_tool_call(payload):
        name, arguments = tool_call
        call_id = call.state.new_id("call_")
        message["content"], finish_reason, output_tokens = None, "tool_calls", text_tokens(name + arguments)
        function = {"name": name, "arguments": arguments}
        message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
        deltas = _tool_call_deltas(call_id, name, arguments)
    elif (content := openai_json_content(payload, words)) is not None:
        message["content"], finish_reason, output_tokens = content, "stop", text_tokens(content)
        deltas = ({"content": piece} for piece in argument_deltas(content))
    usage = chat_usage(chat_prompt_tokens(payload), output_tokens, call.controls)
    if call.streams:
        return await call.stream(_chat_chunks(call, completion_id, deltas, finish_reason, usage))
    return call.json({
        "id": completion_id,
        "object": "chat.completion",
        "created": now(),
        "model": call.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    })


def _tool_call_deltas(call_id: str, name: str, arguments: str) -> Iterator[dict[str, Any]]:
    """A tool call as OpenAI streams it: its id and name first, then the arguments in pieces."""
    yield {"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                           "function": {"name": name, "arguments": ""}}]}
    for piece in argument_deltas(arguments):
        yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}


def _chat_chunks(
    call: Call, completion_id: str, deltas: Iterable[dict[str, Any]], finish_reason: str, usage: dict[str, Any]
) -> Iterator[bytes]:
    """With `stream_options.include_usage`, OpenAI puts `"usage": null` on every chunk and sends the
    usage in one last chunk with `"choices": []`; without it, no chunk has a usage field at all. Some
    compatible providers put the usage on the finishing chunk instead (X-Sim-Extra-Usage-Choice)."""
    stream_options = call.payload.get("stream_options")
    stream_options = stream_options if isinstance(stream_options, dict) else {}
    usage_on_last_choice = call.controls.usage_on_last_choice
    usage_chunk = stream_options.get("include_usage") is True and not usage_on_last_choice
    obfuscate = stream_options.get("include_obfuscation") is not False
    head = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": now(),
        "model": call.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    serial = 0

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        nonlocal serial
        body = {**head, "choices": choices}
        if usage_chunk or usage is not None:
            body["usage"] = usage
        if obfuscate:
            body["obfuscation"] = OBFUSCATION[serial % len(OBFUSCATION)]
        serial += 1
        return data_event(body)

    yield chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                  "logprobs": None, "finish_reason": None}])
    for delta in deltas:
        yield chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
    finish = [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}]
    if usage_on_last_choice:
        yield chunk(finish, usage)
    else:
        yield chunk(finish)
        if usage_chunk:
            yield chunk([], usage)
    yield STREAM_DONE


# --- legacy completions -----------------------------------------------------------------------

async def completions(call: Call) -> web.StreamResponse:
    if error := missing_parameter(call, "model", "prompt"):
        return error
    words = reply_word_count(call.payload.get("max_tokens", LEGACY_DEFAULT_MAX_TOKENS), call.controls.words)
    finish_reason = "length" if words < call.controls.words else "stop"
    prompt = completion_prompt_tokens(call.payload) + call.controls.cached_tokens
    usage = {"prompt_tokens": prompt, "completion_tokens": words, "total_tokens": prompt + words}
    head = {"id": call.state.new_id("cmpl-"), "object": "text_completion", "created": now(), "model": call.model}
    if call.streams:
        return await call.stream(_completion_chunks(call, head, words, finish_reason, usage))
    choice = {"text": reply_text(words, call.controls.reply), "index": 0, "logprobs": None,
              "finish_reason": finish_reason}
    return call.json({**head, "choices": [choice], "usage": usage, "system_fingerprint": None})


def _completion_chunks(
    call: Call, head: dict[str, Any], words: int, finish_reason: str, usage: dict[str, Any]
) -> Iterator[bytes]:
    stream_options = call.payload.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    tail = {"usage": None} if include_usage else {}
    for delta in reply_deltas(words, call.controls.reply):
        yield data_event({**head, "choices": [{"text": delta, "index": 0, "logprobs": None, "finish_reason": None}],
                          **tail})
    yield data_event({**head, "choices": [{"text": "", "index": 0, "logprobs": None,
                                           "finish_reason": finish_reason}], **tail})
    if include_usage:
        yield data_event({**head, "choices": [], "usage": usage})
    yield STREAM_DONE


# --- Responses API ----------------------------------------------------------------------------

async def responses(call: Call) -> web.StreamResponse:
    if error := missing_parameter(call, "model"):
        return error
    payload = call.payload
    controls = call.controls
    words = reply_word_count(payload.get("max_output_tokens"), controls.words)
    incomplete = words < controls.words
    input_tokens = responses_input_tokens(payload) + controls.cached_tokens
    output_tokens = words + controls.reasoning_tokens
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": controls.cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": controls.reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }
    reply = _ResponseReply(call, words=words, incomplete=incomplete, usage=usage)
    if call.streams:
        return await call.stream(reply.events())
    return call.json(reply.response(status=reply.final_status, output=reply.output(), usage=usage))


class _ResponseReply:
    """One Responses API answer: a reasoning item when the model reasoned, then the message."""

    def __init__(self, call: Call, *, words: int, incomplete: bool, usage: dict[str, Any]) -> None:
        self.call = call
        self.words = words
        self.usage = usage
        self.final_status = "incomplete" if incomplete else "completed"
        self.response_id = call.state.new_id("resp_")
        self.message_id = call.state.new_id("msg_")
        self.reasoning_id = call.state.new_id("rs_") if call.controls.reasoning_tokens else None
        self.created_at = now()

    def response(self, *, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        payload = self.call.payload
        reasoning = payload.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": payload.get("instructions"),
            "max_output_tokens": payload.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": self.call.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": payload.get("previous_response_id"),
            "prompt_cache_key": payload.get("prompt_cache_key"),
            "reasoning": {"effort": effort, "summary": None},
            "safety_identifier": None,
            "service_tier": "default",
            "store": payload.get("store", True),
            "temperature": payload.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": payload.get("tool_choice", "auto"),
            "tools": payload.get("tools", []),
            "top_logprobs": 0,
            "top_p": payload.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": payload.get("metadata") or {},
        }

    def reasoning_item(self) -> dict[str, Any]:
        return {"id": self.reasoning_id, "type": "reasoning", "summary": []}

    def text_part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def message_item(self, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.message_id, "type": "message", "status": status, "content": content, "role": "assistant"}

    def output(self) -> list[dict[str, Any]]:
        text = reply_text(self.words, self.call.controls.reply)
        message = self.message_item(self.final_status, [self.text_part(text)])
        return [self.reasoning_item(), message] if self.reasoning_id else [message]

    def events(self) -> Iterator[bytes]:
        sequence = 0

        def event(name: str, **fields: Any) -> bytes:
            nonlocal sequence
            body = named_event(name, {"type": name, "sequence_number": sequence, **fields})
            sequence += 1
            return body

        in_progress = self.response(status="in_progress", output=[], usage=None)
        yield event("response.created", response=in_progress)
        yield event("response.in_progress", response=in_progress)
        index = 0
        if self.reasoning_id:
            yield event("response.output_item.added", output_index=index, item=self.reasoning_item())
            yield event("response.output_item.done", output_index=index, item=self.reasoning_item())
            index += 1
        part = {"item_id": self.message_id, "output_index": index, "content_index": 0}
        yield event("response.output_item.added", output_index=index, item=self.message_item("in_progress", []))
        yield event("response.content_part.added", **part, part=self.text_part(""))
        for serial, delta in enumerate(reply_deltas(self.words, self.call.controls.reply)):
            yield event("response.output_text.delta", **part, delta=delta, logprobs=[],
                        obfuscation=OBFUSCATION[serial % len(OBFUSCATION)])
        text = reply_text(self.words, self.call.controls.reply)
        yield event("response.output_text.done", **part, text=text, logprobs=[])
        yield event("response.content_part.done", **part, part=self.text_part(text))
        yield event("response.output_item.done", output_index=index,
                    item=self.message_item(self.final_status, [self.text_part(text)]))
        final = self.response(status=self.final_status, output=self.output(), usage=self.usage)
        yield event(f"response.{self.final_status}", response=final)


async def input_tokens(call: Call) -> web.StreamResponse:
    """POST /v1/responses/input_tokens: what a Responses request would read, counted (free upstream)."""
    if error := missing_parameter(call, "model"):
        return error
    return call.json({"object": "response.input_tokens", "input_tokens": responses_input_tokens(call.payload)})


# --- embeddings and models --------------------------------------------------------------------

async def embeddings(call: Call) -> web.StreamResponse:
    if error := missing_parameter(call, "model", "input"):
        return error
    items = text_inputs(call.payload["input"])
    if items is None:
        return error_response(Wire.OPENAI, 400, "'input' must be a string, an array of strings or an array of "
                              "token arrays.", param="input")
    dimensions = call.payload.get("dimensions", call.state.embedding_dimensions)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
        return error_response(Wire.OPENAI, 400, f"Invalid value for 'dimensions': {dimensions!r}.", param="dimensions")
    encode = embedding_base64 if call.payload.get("encoding_format") == "base64" else embedding_vector
    tokens = sum(text_input_tokens(item) for item in items)
    return call.json({
        "object": "list",
        "data": [{"object": "embedding", "index": index, "embedding": encode(item, dimensions)}
                 for index, item in enumerate(items)],
        "model": call.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


async def list_models(call: Call) -> web.StreamResponse:
    return web.Response(body=MODELS_BODY, content_type=JSON, headers=call.response_headers)


async def retrieve_model(call: Call) -> web.StreamResponse:
    model = call.request.match_info["model"]
    created, owner = next(((c, o) for m, c, o in MODELS if m == model), (1700000000, "user"))
    return call.json({"id": model, "object": "model", "created": created, "owned_by": owner})

"""An OpenAI chat-completions request, as an Anthropic Messages request (an OpenAI client served by a
Claude model).

What maps: system and developer messages → `system` (in order, wherever they stood); user, assistant
and tool turns (consecutive tool results → one user turn of `tool_result` blocks); text and image parts
(a data: URL → a base64 source, any other URL → a url source); assistant `tool_calls` → `tool_use`
blocks; `tools` (function JSON schema → `input_schema`), `tool_choice` and `parallel_tool_calls`;
`stop`; `max_completion_tokens` / `max_tokens` (absent: the target model's published output ceiling,
which Anthropic requires; above it: capped to it); `temperature` (0–1 only) and `top_p`; `stream`; `user` /
`safety_identifier` → `metadata.user_id`.

Dropped, since they do not change what the model answers: a message's `name`, `seed` (best effort
even on OpenAI), `service_tier`, `store: false`, `metadata` (OpenAI's stored-completion tags), and
`stream_options` (the stream translator honours `include_usage`).

Refused (`Untranslatable`): any parameter not named above, unless null or its default (`_NEUTRAL`) —
among them n > 1, logprobs, response_format other than text, audio and modalities, prediction,
reasoning_effort, penalties, logit_bias, web_search_options, the legacy functions — a temperature above 1,
a stop sequence of only whitespace (Anthropic refuses it), a conversation ending with an assistant
message (Claude would continue it), a strict tool, a non-function tool, audio and
file (PDF) parts, a `function` role, and tool-call arguments that are not a JSON object. Text that is only
whitespace is left out (Anthropic refuses it, and it says nothing).
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import orjson

from proxy.pricing import default_max_output_tokens, published_max_output_tokens

from .base import Untranslatable, as_dict, as_list, dumps, json_object, unknown_keys

_DATA_URL = re.compile(r"data:(image/[a-z0-9.+-]+);base64,(.*)", re.DOTALL | re.IGNORECASE)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_TRANSLATED = frozenset({
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "stop", "max_tokens",
    "max_completion_tokens", "temperature", "top_p", "stream", "stream_options", "user", "safety_identifier",
})
_DROPPED = frozenset({"seed", "service_tier", "store", "metadata"})
_KNOWN = _TRANSLATED | _DROPPED
# Values that ask for nothing beyond the default: accepted from clients that spell every parameter out.
_NEUTRAL = MappingProxyType({
    "n": 1, "logprobs": False, "top_logprobs": 0, "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": {},
    "response_format": {"type": "text"}, "modalities": ["text"], "functions": [],
})


def chat_to_messages(body: bytes, *, model: str) -> bytes:
    """The Messages request for `model` that asks what the chat request `body` asks; Untranslatable else."""
    payload = json_object(body, "request")
    unknown_keys(payload, _KNOWN, _NEUTRAL)
    _refuse_unfaithful(payload)
    system, messages = _conversation(as_list(payload.get("messages")))
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(payload, model), "messages": messages}
    if system:
        out["system"] = system
    if stop := _stop_sequences(payload.get("stop")):
        out["stop_sequences"] = stop
    for name in ("temperature", "top_p"):
        if payload.get(name) is not None:
            out[name] = payload[name]
    if payload.get("stream") is True:
        out["stream"] = True
    user = payload.get("safety_identifier") or payload.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    tools = as_list(payload.get("tools"))
    if tools:
        out["tools"] = [_tool(tool) for tool in tools]
    choice = _tool_choice(payload.get("tool_choice"), parallel=payload.get("parallel_tool_calls"))
    if choice is not None and tools:  # Anthropic refuses a tool_choice without tools
        out["tool_choice"] = choice
    return dumps(out)


def _refuse_unfaithful(payload: dict[str, Any]) -> None:
    if payload.get("store") is True:
        raise Untranslatable("store: true (Anthropic keeps no completions)")
    temperature = payload.get("temperature")
    if isinstance(temperature, int | float) and temperature > 1:
        raise Untranslatable("temperature above 1 (Anthropic's range is 0–1)")


def _stop_sequences(stop: object) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else [s for s in as_list(stop) if isinstance(s, str)]
    if any(not sequence.strip() for sequence in sequences):
        # Anthropic refuses them, and dropping one would let the answer run past where the client stops it.
        raise Untranslatable("a stop sequence of only whitespace")
    return sequences


def _max_tokens(payload: dict[str, Any], model: str) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            # A limit above what the model can write would be refused, and cannot change the answer: capped.
            return min(value, published_max_output_tokens("anthropic", model) or value)
    # Anthropic requires a limit; the model's own ceiling is what "no limit" means on OpenAI.
    return default_max_output_tokens("anthropic", model)


# --- messages ----------------------------------------------------------------------------------------


def _conversation(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        message = as_dict(message)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"type": "text", "text": text} for text in _texts(message.get("content"), role)
                          if not text.isspace())
        elif role == "user":
            if content := _user_content(message.get("content")):
                turns.append({"role": "user", "content": content})
        elif role == "assistant":
            # An empty assistant turn says nothing; Anthropic refuses one, so it is left out.
            if content := _assistant_content(message):
                turns.append({"role": "assistant", "content": content})
        elif role == "tool":
            result = _tool_result(message)
            previous = turns[-1] if turns else None
            if previous is not None and previous["role"] == "user" and _all_tool_results(previous["content"]):
                previous["content"].append(result)
            else:
                turns.append({"role": "user", "content": [result]})
        else:
            raise Untranslatable(f"a message of role {role!r}")
    if turns and turns[-1]["role"] == "assistant":
        # Claude would continue that turn (a prefill) where OpenAI answers with a new message.
        raise Untranslatable("a conversation that ends with an assistant message")
    return system, turns


def _all_tool_results(content: object) -> bool:
    return isinstance(content, list) and all(block.get("type") == "tool_result" for block in content)


def _texts(content: object, role: object) -> list[str]:
    """The text of content that may only hold text (system prompts, tool results)."""
    if isinstance(content, str):
        return [content] if content else []
    texts = []
    for part in as_list(content):
        part = as_dict(part)
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise Untranslatable(f"a {part.get('type')!r} part in a {role} message")
        texts.append(part["text"])
    return texts


def _user_content(content: object) -> str | list[dict[str, Any]]:
    """The turn's content; empty when it says nothing (Anthropic refuses text that is only whitespace)."""
    if isinstance(content, str):
        return "" if content.isspace() else content
    blocks = []
    for part in as_list(content):
        part = as_dict(part)
        kind = part.get("type")
        if kind == "text":
            text = str(part.get("text", ""))
            if text and not text.isspace():
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            image_url = part.get("image_url")  # an object, or the bare URL older clients send
            blocks.append(_image({"url": image_url} if isinstance(image_url, str) else as_dict(image_url)))
        else:  # input_audio, file (PDF and other documents): Anthropic's documents are not the same thing
            raise Untranslatable(f"a {kind!r} content part")
    return blocks


def _image(image_url: dict[str, Any]) -> dict[str, Any]:
    url = image_url.get("url")
    if not isinstance(url, str):
        raise Untranslatable("an image without a URL")
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None or match.group(1).lower() not in _IMAGE_TYPES:
            raise Untranslatable("an image data URL Anthropic does not accept")
        source = {"type": "base64", "media_type": match.group(1).lower(), "data": match.group(2)}
        return {"type": "image", "source": source}
    # `detail` has no Anthropic equivalent; it only sets OpenAI's resolution (and price).
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_content(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message.get("audio") or message.get("function_call"):
        raise Untranslatable("an assistant message with audio or a legacy function call")
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content and not content.isspace():
            blocks.append({"type": "text", "text": content})
    else:
        for part in as_list(content):
            part = as_dict(part)
            text = part.get("text") if part.get("type") == "text" else part.get("refusal")
            if not isinstance(text, str):
                raise Untranslatable(f"a {part.get('type')!r} part in an assistant message")
            if text and not text.isspace():
                blocks.append({"type": "text", "text": text})
    for call in as_list(message.get("tool_calls")):
        call = as_dict(call)
        function = as_dict(call.get("function"))
        if call.get("type", "function") != "function":
            raise Untranslatable(f"a {call.get('type')!r} tool call")
        blocks.append({"type": "tool_use", "id": str(call.get("id", "")), "name": str(function.get("name", "")),
                       "input": _arguments(function.get("arguments"))})
    return blocks


def _arguments(arguments: object) -> dict[str, Any]:
    if arguments in (None, ""):
        return {}
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str | bytes) else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise Untranslatable("tool-call arguments that are not a JSON object")
    return value


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    texts = _texts(message.get("content"), "tool")
    content: str | list[dict[str, Any]] = "".join(texts) if len(texts) < 2 else [
        {"type": "text", "text": text} for text in texts]
    return {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id", "")), "content": content}


# --- tools -------------------------------------------------------------------------------------------


def _tool(tool: object) -> dict[str, Any]:
    tool = as_dict(tool)
    function = as_dict(tool.get("function"))
    if tool.get("type") != "function" or not function:
        raise Untranslatable(f"a {tool.get('type')!r} tool")
    if function.get("strict") is True:
        raise Untranslatable("a strict tool (Anthropic does not guarantee the schema)")
    out: dict[str, Any] = {"name": function.get("name", "")}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return out


def _tool_choice(choice: object, *, parallel: object) -> dict[str, Any] | None:
    out: dict[str, Any]
    if choice is None:
        if parallel is not False:
            return None
        out = {"type": "auto"}
    elif choice in ("auto", "none"):
        out = {"type": choice}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out = {"type": "tool", "name": as_dict(choice.get("function")).get("name", "")}
    else:
        raise Untranslatable("this tool_choice")
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out

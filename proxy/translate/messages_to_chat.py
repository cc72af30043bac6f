"""An Anthropic Messages request, as an OpenAI chat-completions request (an Anthropic client served by
an OpenAI or OpenAI-compatible model).

What maps: `system` → one system message; user and assistant turns; text and image blocks (base64 →
a data: URL, url → the URL); `tool_use` blocks → assistant `tool_calls`; `tool_result` blocks → `tool`
messages (placed before the rest of their turn, as OpenAI wants them right after the calls); `tools`
(`input_schema` → function parameters), `tool_choice` (auto/any/tool/none → auto/required/named/none,
`disable_parallel_tool_use` → `parallel_tool_calls: false`); `stop_sequences` (up to 4) → `stop`;
`max_tokens` (→ `max_completion_tokens` for OpenAI's reasoning models, which refuse `max_tokens`; capped
to the model's published output ceiling, which Claude clients often exceed);
`temperature`, `top_p`; `stream` (always with `stream_options.include_usage`, so the usage the
Anthropic client expects arrives); `metadata.user_id` → `user`.

Dropped, since they do not change what the model answers: `cache_control` marks (OpenAI caches prompts
by itself), a tool result's `is_error` flag (its text still says what failed), `service_tier`, and
`thinking: {"type": "disabled"}`.

Refused (`Untranslatable`): a prefilled (final) assistant turn; any parameter not named above (unless
null) — among them `thinking` (enabled), `top_k`,
container, mcp_servers, context_management — documents (PDF), thinking and redacted-thinking blocks,
server tools and their results, citations, images inside tool results, more than 4 stop sequences.
"""

from __future__ import annotations

import re
from typing import Any

from proxy.pricing import published_max_output_tokens

from .base import Untranslatable, as_dict, as_list, dumps, json_object, unknown_keys

OPENAI_MAX_STOP_SEQUENCES = 4
_REASONING_MODEL = re.compile(r"(?:^|/)(?:o\d|gpt-5)")

_TRANSLATED = frozenset({
    "model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p", "stream",
    "metadata", "tools", "tool_choice",
})
_DROPPED = frozenset({"service_tier", "thinking"})
_KNOWN = _TRANSLATED | _DROPPED


def messages_to_chat(body: bytes, *, model: str) -> bytes:
    """The chat request for `model` that asks what the Messages request `body` asks; Untranslatable else."""
    payload = json_object(body, "request")
    unknown_keys(payload, _KNOWN)
    if as_dict(payload.get("thinking")).get("type", "disabled") != "disabled":
        raise Untranslatable("extended thinking")
    messages: list[dict[str, Any]] = []
    if (system := _system(payload.get("system"))) is not None:
        messages.append({"role": "system", "content": system})
    turns = as_list(payload.get("messages"))
    for turn in turns:
        messages.extend(_turn(as_dict(turn)))
    if turns and as_dict(turns[-1]).get("role") == "assistant":
        # A prefill: Claude continues the turn, where OpenAI would answer with a new message.
        raise Untranslatable("a prefilled assistant turn")
    out: dict[str, Any] = {"model": model, "messages": messages}
    if isinstance(limit := payload.get("max_tokens"), int) and not isinstance(limit, bool):
        # A limit above what the model can write would be refused, and cannot change the answer: capped.
        limit = min(limit, published_max_output_tokens(None, model) or limit)
        out["max_completion_tokens" if _REASONING_MODEL.search(model) else "max_tokens"] = limit
    stop = [s for s in as_list(payload.get("stop_sequences")) if isinstance(s, str)]
    if len(stop) > OPENAI_MAX_STOP_SEQUENCES:
        raise Untranslatable(f"more than {OPENAI_MAX_STOP_SEQUENCES} stop sequences")
    if stop:
        out["stop"] = stop
    for name in ("temperature", "top_p"):
        if payload.get(name) is not None:
            out[name] = payload[name]
    if payload.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    user = as_dict(payload.get("metadata")).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user
    tools = as_list(payload.get("tools"))
    if tools:
        out["tools"] = [_tool(tool) for tool in tools]
        choice, parallel = _tool_choice(as_dict(payload.get("tool_choice")))
        if choice is not None:
            out["tool_choice"] = choice
        if parallel is False:
            out["parallel_tool_calls"] = False
    return dumps(out)


def _system(system: object) -> str | list[dict[str, Any]] | None:
    if isinstance(system, str):
        return system or None
    parts = [{"type": "text", "text": _text_of(block, "system prompt")} for block in as_list(system)]
    return parts or None


def _text_of(block: object, where: str) -> str:
    block = as_dict(block)
    if block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise Untranslatable(f"a {block.get('type')!r} block in a {where}")
    if block.get("citations"):
        raise Untranslatable("citations")
    return str(block["text"])


def _turn(turn: dict[str, Any]) -> list[dict[str, Any]]:
    role = turn.get("role")
    content = turn.get("content")
    if role not in ("user", "assistant"):
        raise Untranslatable(f"a message of role {role!r}")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    return _user_turn(as_list(content)) if role == "user" else [_assistant_turn(as_list(content))]


def _user_turn(blocks: list[Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        block = as_dict(block)
        kind = block.get("type")
        if kind == "tool_result":
            results.append(_tool_message(block))
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(as_dict(block.get("source")))}})
        else:
            parts.append({"type": "text", "text": _text_of(block, "user message")})
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _image_url(source: dict[str, Any]) -> str:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise Untranslatable(f"an image of source {source.get('type')!r}")


def _tool_message(block: dict[str, Any]) -> dict[str, Any]:
    content = block.get("content")
    text = content if isinstance(content, str) else "".join(
        _text_of(part, "tool result") for part in as_list(content))
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}


def _assistant_turn(blocks: list[Any]) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        block = as_dict(block)
        if block.get("type") == "tool_use":
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": {
                "name": str(block.get("name", "")), "arguments": dumps(block.get("input") or {}).decode()}})
        else:  # thinking, redacted_thinking, server tools: refused by _text_of
            texts.append(_text_of(block, "assistant message"))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: object) -> dict[str, Any]:
    tool = as_dict(tool)
    if tool.get("type", "custom") != "custom" or "input_schema" not in tool:
        raise Untranslatable(f"a server tool ({tool.get('type')!r})")
    function: dict[str, Any] = {"name": tool.get("name", "")}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = tool["input_schema"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> tuple[str | dict[str, Any] | None, bool | None]:
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    if kind is None:
        return None, parallel
    if kind in ("auto", "none"):
        return kind, parallel
    if kind == "any":
        return "required", parallel
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}, parallel
    raise Untranslatable(f"tool_choice {kind!r}")

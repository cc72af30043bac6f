"""Tool calls and structured output, as the simulated models make them: deterministic, so a test can
predict every byte and token.

A request with tools gets a call to one of them (the one `tool_choice` names, else the first), with
arguments made from the tool's JSON schema, unless the conversation's last message already carries the
tool's result (then the model answers in words, closing the round trip) or `tool_choice` says none.
A request for JSON (`response_format` json_object / json_schema) gets JSON content: an instance of the
schema, or `{"answer": …}`. Output tokens are the JSON text's tokens, as for any text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from .content import reply_text

MAX_SCHEMA_DEPTH = 6
ARGUMENT_DELTA_BYTES = 12  # streamed arguments arrive in pieces this long, as providers split them


def schema_instance(schema: object, *, depth: int = 0) -> Any:
    """A small value that satisfies `schema` (enum, const, type, properties, items): every property of an
    object, required or not, so structured output is complete."""
    if not isinstance(schema, dict) or depth > MAX_SCHEMA_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return schema_instance(options[0], depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: schema_instance(sub, depth=depth + 1) for name, sub in properties.items()}
    if kind == "array":
        item = schema_instance(schema.get("items"), depth=depth + 1)
        return [] if item is None else [item]
    return {"string": "sample", "integer": 1, "number": 1.5, "boolean": True}.get(str(kind))


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def argument_deltas(arguments: str) -> Iterator[str]:
    for start in range(0, len(arguments), ARGUMENT_DELTA_BYTES):
        yield arguments[start:start + ARGUMENT_DELTA_BYTES]


# --- OpenAI -----------------------------------------------------------------------------------------

def openai_tool_call(payload: dict[str, Any]) -> tuple[str, str] | None:
    """(function name, arguments JSON) the model calls, or None when it answers in words."""
    tools = [t for t in payload.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = payload.get("tool_choice", "auto")
    messages = payload.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if not tools or choice == "none" or (isinstance(last, dict) and last.get("role") == "tool"):
        return None
    chosen = tools[0]["function"]
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        chosen = next((t["function"] for t in tools if t["function"].get("name") == name), chosen)
    return str(chosen.get("name", "")), json_text(schema_instance(chosen.get("parameters")) or {})


def openai_json_content(payload: dict[str, Any], words: int) -> str | None:
    """The JSON a `response_format` asks for, or None for plain text."""
    response_format = payload.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return json_text(schema_instance(schema) if schema else {})
    if response_format.get("type") == "json_object":
        return json_text({"answer": reply_text(words)})
    return None


# --- Anthropic --------------------------------------------------------------------------------------

def anthropic_tool_use(payload: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(tool name, input) the model uses, or None when it answers in words."""
    tools = [t for t in payload.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
    choice = payload.get("tool_choice")
    choice = choice if isinstance(choice, dict) else {"type": "auto"}
    messages = payload.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    answered = isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content)
    if not tools or choice.get("type") == "none" or answered:
        return None
    chosen = tools[0]
    if choice.get("type") == "tool":
        chosen = next((t for t in tools if t.get("name") == choice.get("name")), chosen)
    value = schema_instance(chosen.get("input_schema"))
    return str(chosen.get("name", "")), value if isinstance(value, dict) else {}

"""Where a request's text is, per wire format and operation, and where a server-side system prompt goes.

Pure functions over the parsed JSON body (proxy/guardrail_step.py parses it and serialises it again only when
something changed). `text_fields_rewrite` calls `rewrite(text, from_user)` for every piece of text that
reaches the model and puts back what it returns; `from_user` is False for system/developer instructions and
for earlier assistant turns, which the injection heuristic does not score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rewrite = Callable[[str, bool], str]

SYSTEM_ROLES = frozenset({"system", "developer"})
NOT_USER_ROLES = SYSTEM_ROLES | {"assistant", "model"}


def _text(value: Any, rewrite: Rewrite, from_user: bool) -> Any:
    return rewrite(value, from_user) if isinstance(value, str) else value


def _parts(parts: Any, rewrite: Rewrite, from_user: bool, *, text_types: frozenset[str]) -> None:
    """Content parts in place: text parts ({"type": "text", "text": ...}) and, nested, tool results' content."""
    if not isinstance(parts, list):
        return
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") in text_types and isinstance(part.get("text"), str):
            part["text"] = rewrite(part["text"], from_user)
        elif part.get("type") in ("tool_result", "function_call_output"):
            # A tool's output is text the model reads as much as the user's own (and injections hide there).
            for name in ("content", "output"):
                if isinstance(part.get(name), str):
                    part[name] = rewrite(part[name], True)
                else:
                    _parts(part.get(name), rewrite, True, text_types=text_types)


CHAT_TEXT = frozenset({"text"})
RESPONSES_TEXT = frozenset({"input_text", "output_text", "text"})
MESSAGES_TEXT = frozenset({"text"})


def _chat(body: dict[str, Any], rewrite: Rewrite) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for message in messages:
        if not isinstance(message, dict):
            continue
        from_user = message.get("role") not in NOT_USER_ROLES
        if isinstance(message.get("content"), str):
            message["content"] = rewrite(message["content"], from_user)
        else:
            _parts(message.get("content"), rewrite, from_user, text_types=CHAT_TEXT)


def _completions(body: dict[str, Any], rewrite: Rewrite) -> None:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        body["prompt"] = rewrite(prompt, True)
    elif isinstance(prompt, list):
        body["prompt"] = [_text(p, rewrite, True) for p in prompt]


def _embeddings(body: dict[str, Any], rewrite: Rewrite) -> None:
    value = body.get("input")
    if isinstance(value, str):
        body["input"] = rewrite(value, True)
    elif isinstance(value, list):
        body["input"] = [_text(v, rewrite, True) for v in value]


def _responses(body: dict[str, Any], rewrite: Rewrite) -> None:
    if isinstance(body.get("instructions"), str):
        body["instructions"] = rewrite(body["instructions"], False)
    items = body.get("input")
    if isinstance(items, str):
        body["input"] = rewrite(items, True)
        return
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        from_user = item.get("role") not in NOT_USER_ROLES
        if isinstance(item.get("content"), str):
            item["content"] = rewrite(item["content"], from_user)
        elif item.get("type") == "function_call_output" and isinstance(item.get("output"), str):
            item["output"] = rewrite(item["output"], True)
        else:
            _parts(item.get("content"), rewrite, from_user, text_types=RESPONSES_TEXT)


def _messages(body: dict[str, Any], rewrite: Rewrite) -> None:
    if isinstance(body.get("system"), str):
        body["system"] = rewrite(body["system"], False)
    else:
        _parts(body.get("system"), rewrite, False, text_types=MESSAGES_TEXT)
    _chat(body, rewrite)


def _gemini_content(content: Any, rewrite: Rewrite, from_user: bool) -> None:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return
    for part in content["parts"]:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            part["text"] = rewrite(part["text"], from_user)


def _generate_content(body: dict[str, Any], rewrite: Rewrite) -> None:
    for name in ("systemInstruction", "system_instruction"):
        _gemini_content(body.get(name), rewrite, False)
    contents = body.get("contents")
    if isinstance(contents, list):
        for content in contents:
            from_user = not isinstance(content, dict) or content.get("role") not in NOT_USER_ROLES
            _gemini_content(content, rewrite, from_user)


TEXT_WALKERS: dict[str, Callable[[dict[str, Any], Rewrite], None]] = {
    "chat": _chat,
    "completions": _completions,
    "embeddings": _embeddings,
    "responses": _responses,
    "messages": _messages,
    "generate_content": _generate_content,
}


def text_fields_rewrite(operation: str, body: dict[str, Any], rewrite: Rewrite) -> None:
    """Rewrite, in place, every text of the request that reaches the model (operations without text: none)."""
    walker = TEXT_WALKERS.get(operation)
    if walker is not None:
        walker(body, rewrite)


def system_prompt_apply(operation: str, body: dict[str, Any], *, text: str, mode: str) -> bool:
    """Put the account's system prompt in the request: before the client's own instructions ("prepend") or in
    their place ("replace"). False for an operation that has no instructions (embeddings)."""
    replace = mode == "replace"
    if operation == "chat":
        found = body.get("messages")
        messages: list[Any] = found if isinstance(found, list) else []
        if replace:
            messages = [m for m in messages if not (isinstance(m, dict) and m.get("role") in SYSTEM_ROLES)]
        body["messages"] = [{"role": "system", "content": text}, *messages]
        return True
    if operation == "responses":
        own = body.get("instructions")
        body["instructions"] = text if replace or not isinstance(own, str) or not own else f"{text}\n\n{own}"
        items = body.get("input")
        if replace and isinstance(items, list):
            body["input"] = [i for i in items if not (isinstance(i, dict) and i.get("role") in SYSTEM_ROLES)]
        return True
    if operation == "messages":
        own = body.get("system")
        if replace or not own:
            body["system"] = text
        elif isinstance(own, str):
            body["system"] = f"{text}\n\n{own}"
        elif isinstance(own, list):
            body["system"] = [{"type": "text", "text": text}, *own]
        else:
            body["system"] = text
        return True
    if operation == "generate_content":
        name = "system_instruction" if "system_instruction" in body else "systemInstruction"
        own = body.get(name)
        parts = own.get("parts") if isinstance(own, dict) else None
        kept: list[Any] = parts if isinstance(parts, list) and not replace else []
        body[name] = {"parts": [{"text": text}, *kept]}
        return True
    return False

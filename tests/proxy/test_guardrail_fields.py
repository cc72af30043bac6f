"""Where each format's request text is, and where a server-side system prompt goes (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.guardrail_fields import system_prompt_apply, text_fields_rewrite


def seen(operation: str, body: dict[str, Any]) -> list[tuple[str, bool]]:
    """Every text the walker visits, with whether it counts as the user's, each upper-cased in place."""
    visited: list[tuple[str, bool]] = []

    def rewrite(text: str, from_user: bool) -> str:
        visited.append((text, from_user))
        return text.upper()

    text_fields_rewrite(operation, body, rewrite)
    return visited


def test_chat_strings_parts_and_roles() -> None:
    body = {"model": "m", "messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": [
            {"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]},
        {"role": "assistant", "content": "prev", "tool_calls": []}, {"role": "tool", "content": "tool out"}]}
    assert seen("chat", body) == [("sys", False), ("hello", True), ("prev", False), ("tool out", True)]
    assert body["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "https://x/a.png"}}
    assert body["messages"][1]["content"][0]["text"] == "HELLO"


def test_responses_input_string_items_and_instructions() -> None:
    assert seen("responses", {"input": "hi", "instructions": "be"}) == [("be", False), ("hi", True)]
    body = {"input": [{"role": "developer", "content": "dev"},
                      {"role": "user", "content": [{"type": "input_text", "text": "q"},
                                                   {"type": "input_image", "image_url": "data:"}]},
                      {"type": "function_call_output", "call_id": "c", "output": "result"}]}
    assert seen("responses", body) == [("dev", False), ("q", True), ("result", True)]


def test_messages_system_blocks_and_tool_results() -> None:
    body = {"system": [{"type": "text", "text": "sys"}], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "q"},
                                     {"type": "tool_result", "tool_use_id": "t", "content": "out"},
                                     {"type": "tool_result", "tool_use_id": "u",
                                      "content": [{"type": "text", "text": "nested"}]}]}]}
    assert seen("messages", body) == [("sys", False), ("q", True), ("out", True), ("nested", True)]


def test_gemini_contents_and_system_instruction() -> None:
    body = {"systemInstruction": {"parts": [{"text": "sys"}]},
            "contents": [{"role": "user", "parts": [{"text": "q"}, {"inlineData": {"data": "AAAA"}}]},
                         {"role": "model", "parts": [{"text": "a"}]}]}
    assert seen("generate_content", body) == [("sys", False), ("q", True), ("a", False)]


def test_embeddings_and_legacy_completions() -> None:
    assert seen("embeddings", {"input": ["a", "b", [1, 2]]}) == [("a", True), ("b", True)]
    assert seen("completions", {"prompt": "p"}) == [("p", True)]


def test_unknown_shapes_are_left_alone() -> None:
    body: dict[str, Any] = {"messages": "not a list", "input": 3}
    assert seen("chat", body) == [] and seen("responses", body) == [] and seen("unmetered", body) == []


@pytest.mark.parametrize(("operation", "body", "mode", "expected"), [
    ("chat", {"messages": [{"role": "system", "content": "own"}, {"role": "user", "content": "q"}]}, "prepend",
     {"messages": [{"role": "system", "content": "S"}, {"role": "system", "content": "own"},
                   {"role": "user", "content": "q"}]}),
    ("chat", {"messages": [{"role": "developer", "content": "own"}, {"role": "user", "content": "q"}]}, "replace",
     {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}]}),
    ("responses", {"input": "q"}, "prepend", {"input": "q", "instructions": "S"}),
    ("messages", {"system": [{"type": "text", "text": "own"}]}, "prepend",
     {"system": [{"type": "text", "text": "S"}, {"type": "text", "text": "own"}]}),
    ("generate_content", {"systemInstruction": {"parts": [{"text": "own"}]}}, "prepend",
     {"systemInstruction": {"parts": [{"text": "S"}, {"text": "own"}]}}),
    ("generate_content", {"system_instruction": {"parts": [{"text": "own"}]}}, "replace",
     {"system_instruction": {"parts": [{"text": "S"}]}}),
])
def test_the_system_prompt_goes_where_each_format_reads_it(operation: str, body: dict, mode: str,
                                                           expected: dict) -> None:
    assert system_prompt_apply(operation, body, text="S", mode=mode)
    assert body == expected


def test_embeddings_take_no_system_prompt() -> None:
    body = {"input": "x"}
    assert not system_prompt_apply("embeddings", body, text="S", mode="prepend") and body == {"input": "x"}

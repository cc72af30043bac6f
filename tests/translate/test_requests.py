"""Request translation, both ways: golden files (tests/translate/golden/*.json: the client's request, the
target model, and the target's request), and the refusals that make a route skip a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.providers.base import Operation
from proxy.translate import MessagesViaChat, Untranslatable, adapter_for
from proxy.translate.chat_to_messages import chat_to_messages
from proxy.translate.messages_to_chat import messages_to_chat

GOLDEN = Path(__file__).parent / "golden"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}


def golden_cases() -> list[Path]:
    return sorted(GOLDEN.glob("*_to_*.json"))


@pytest.mark.parametrize("path", golden_cases(), ids=lambda path: path.stem)
def test_request_translates_as_its_golden_file_says(path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    translate = chat_to_messages if path.stem.startswith("chat_to_messages") else messages_to_chat
    assert orjson.loads(translate(orjson.dumps(case["request"]), model=case["model"])) == case["translated"]


def test_golden_files_cover_both_directions() -> None:
    stems = [path.stem for path in golden_cases()]
    assert sum(s.startswith("chat_to_messages") for s in stems) >= 3
    assert sum(s.startswith("messages_to_chat") for s in stems) >= 3


def test_max_tokens_defaults_to_the_target_models_output_ceiling() -> None:
    for model, ceiling in (("claude-3-5-haiku-20241022", 8192), ("claude-opus-4-1-20250805", 32_000),
                           ("claude-sonnet-4-5-20250929", 64_000)):
        assert orjson.loads(chat_to_messages(orjson.dumps(CHAT), model=model))["max_tokens"] == ceiling
    legacy = {**CHAT, "max_tokens": 77}
    assert orjson.loads(chat_to_messages(orjson.dumps(legacy), model="claude-3-5-haiku-20241022"))["max_tokens"] == 77


def test_chat_tool_choice_none_without_tools_is_left_out() -> None:
    # Anthropic refuses a tool_choice with no tools; OpenAI's "none" then means nothing anyway.
    translated = orjson.loads(chat_to_messages(orjson.dumps({**CHAT, "tool_choice": "none"}), model="claude-x"))
    assert "tool_choice" not in translated


def test_empty_assistant_turn_is_left_out() -> None:
    request = {**CHAT, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""},
                                    {"role": "user", "content": "b"}]}
    translated = orjson.loads(chat_to_messages(orjson.dumps(request), model="claude-x"))
    assert [m["role"] for m in translated["messages"]] == ["user", "user"]


def test_tool_results_are_merged_only_with_tool_results() -> None:
    request = {**CHAT, "messages": [
        {"role": "user", "content": "a"},
        {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        {"role": "tool", "tool_call_id": "c2", "content": ""},
    ]}
    translated = orjson.loads(chat_to_messages(orjson.dumps(request), model="claude-x"))
    assert translated["messages"][1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
        {"type": "tool_result", "tool_use_id": "c2", "content": ""},
    ]}


def test_stream_always_asks_openai_for_usage() -> None:
    translated = orjson.loads(messages_to_chat(orjson.dumps({**MESSAGES, "stream": True}), model="gpt-4o"))
    assert translated["stream_options"] == {"include_usage": True}


CHAT_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"n": 2}, "'n'"),
    ({"logprobs": True}, "'logprobs'"),
    ({"top_logprobs": 2}, "'top_logprobs'"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "'response_format'"),
    ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "'audio'"),
    ({"prediction": {"type": "content", "content": "x"}}, "'prediction'"),
    ({"reasoning_effort": "high"}, "'reasoning_effort'"),
    ({"frequency_penalty": 0.5}, "'frequency_penalty'"),
    ({"logit_bias": {"50256": -100}}, "'logit_bias'"),
    ({"functions": [{"name": "f"}]}, "'functions'"),
    ({"web_search_options": {}}, "'web_search_options'"),
    ({"store": True}, "store"),
    ({"temperature": 1.5}, "temperature"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}]}, "strict"),
    ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "'custom' tool"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "'input_audio'"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}, "'file'"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "'function'"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                "image_url": {"url": "data:image/bmp;base64,AA=="}}]}]}, "image"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}, "arguments"),
    ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "system"),
]


@pytest.mark.parametrize(("change", "reason"), CHAT_REFUSALS, ids=[reason for _, reason in CHAT_REFUSALS])
def test_chat_request_that_claude_cannot_serve_faithfully_is_refused(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason):
        chat_to_messages(orjson.dumps({**CHAT, **change}), model="claude-sonnet-4-5")


MESSAGES_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, "thinking"),
    ({"top_k": 5}, "'top_k'"),
    ({"mcp_servers": []}, "'mcp_servers'"),
    ({"container": "c"}, "'container'"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop sequences"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tool"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]}]}, "'document'"),
    ({"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}]}]},
     "'thinking'"),
    ({"messages": [{"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]}]},
     "'redacted_thinking'"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}]},
     "tool result"),
    ({"messages": [{"role": "assistant", "content": [{"type": "text", "text": "x", "citations": [{}]}]}]},
     "citations"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "image"),
    ({"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "auto", "x": 1}, "output_format": {}},
     "'output_format'"),
]


@pytest.mark.parametrize(("change", "reason"), MESSAGES_REFUSALS, ids=[reason for _, reason in MESSAGES_REFUSALS])
def test_messages_request_that_openai_cannot_serve_faithfully_is_refused(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason):
        messages_to_chat(orjson.dumps({**MESSAGES, **change}), model="gpt-4o")


def test_a_body_that_is_not_a_json_object_is_untranslatable() -> None:
    with pytest.raises(Untranslatable):
        chat_to_messages(b"[1]", model="claude-x")


def test_adapter_for_same_format_is_none_and_unknown_pairs_are_untranslatable() -> None:
    assert adapter_for("openai", "openai", Operation.CHAT) is None
    assert isinstance(adapter_for("anthropic", "openai", Operation.MESSAGES), MessagesViaChat)
    for client, target, operation in (("openai", "anthropic", Operation.RESPONSES),
                                      ("openai", "anthropic", Operation.EMBEDDINGS),
                                      ("gemini", "openai", Operation.GENERATE_CONTENT),
                                      ("openai", "gemini", Operation.CHAT)):
        with pytest.raises(Untranslatable):
            adapter_for(client, target, operation)


def test_upstream_headers_drop_the_clients_format_and_name_anthropics_version() -> None:
    chat = adapter_for("openai", "anthropic", Operation.CHAT)
    messages = adapter_for("anthropic", "openai", Operation.MESSAGES)
    assert chat is not None and messages is not None
    assert chat.upstream_headers({"OpenAI-Organization": "o", "x-sim-words": "3"}) == {
        "x-sim-words": "3", "anthropic-version": "2023-06-01"}
    assert messages.upstream_headers({"anthropic-version": "2023-06-01", "anthropic-beta": "b", "accept": "*/*"}) == {
        "accept": "*/*"}


def test_null_and_default_parameters_are_no_request_at_all() -> None:
    spelt_out = {**CHAT, "n": 1, "logprobs": False, "top_logprobs": None, "frequency_penalty": 0,
                 "presence_penalty": 0.0, "logit_bias": {}, "response_format": {"type": "text"},
                 "modalities": ["text"], "prediction": None, "reasoning_effort": None}
    assert chat_to_messages(orjson.dumps(spelt_out), model="claude-x") == chat_to_messages(
        orjson.dumps(CHAT), model="claude-x")
    assert orjson.loads(messages_to_chat(orjson.dumps({**MESSAGES, "top_k": None}), model="gpt-4o"))


def test_whitespace_only_stop_sequences_are_refused_for_claude() -> None:
    for stop in ("\n", ["END", " \n"], [""]):
        with pytest.raises(Untranslatable, match="whitespace"):
            chat_to_messages(orjson.dumps({**CHAT, "stop": stop}), model="claude-x")


def test_whitespace_only_text_is_left_out_for_claude() -> None:
    request = {**CHAT, "messages": [
        {"role": "system", "content": " "},
        {"role": "user", "content": [{"type": "text", "text": "\n"}, {"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "  "},
        {"role": "user", "content": "\t"},
        {"role": "user", "content": "Again"},
    ]}
    translated = orjson.loads(chat_to_messages(orjson.dumps(request), model="claude-x"))
    assert "system" not in translated
    assert translated["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                                      {"role": "user", "content": "Again"}]


def test_a_prefill_is_refused_both_ways() -> None:
    # Claude continues a final assistant turn; OpenAI answers it with a new message.
    with pytest.raises(Untranslatable, match="assistant"):
        chat_to_messages(orjson.dumps({**CHAT, "messages": [*CHAT["messages"], {"role": "assistant",
                                                                                  "content": "Sure:"}]}),
                         model="claude-x")
    with pytest.raises(Untranslatable, match="prefill"):
        messages_to_chat(orjson.dumps({**MESSAGES, "messages": [*MESSAGES["messages"],
                                                                {"role": "assistant", "content": "{"}]}),
                         model="gpt-4o")


def test_a_bare_image_url_string_is_read_as_older_clients_send_it() -> None:
    request = {**CHAT, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "https://example.com/a.png"}]}]}
    translated = orjson.loads(chat_to_messages(orjson.dumps(request), model="claude-x"))
    assert translated["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]


def test_a_limit_above_the_targets_published_ceiling_is_capped_to_it() -> None:
    # Claude Code asks 32000; GPT-4o writes at most 16384 and would refuse the call (a 400 ends a route).
    big = {**MESSAGES, "max_tokens": 32_000}
    assert orjson.loads(messages_to_chat(orjson.dumps(big), model="gpt-4o"))["max_tokens"] == 16_384
    assert orjson.loads(messages_to_chat(orjson.dumps(big), model="my-local-llama"))["max_tokens"] == 32_000
    assert orjson.loads(messages_to_chat(orjson.dumps(big), model="o4-mini"))["max_completion_tokens"] == 32_000
    chat = {**CHAT, "max_completion_tokens": 32_768}
    assert orjson.loads(chat_to_messages(orjson.dumps(chat), model="claude-3-5-haiku-20241022"))["max_tokens"] == 8192
    assert orjson.loads(chat_to_messages(orjson.dumps(chat), model="claude-opus-4-1-20250805"))["max_tokens"] == 32_000

"""Non-streamed answers and error bodies, both ways: content, tool calls, stop reasons, usage, ids and the
served model; an upstream error in the client's shape and a status its SDK maps to the same exception."""

from __future__ import annotations

import orjson
import pytest

from proxy.translate.completion_to_message import completion_to_message
from proxy.translate.errors import error_to_anthropic, error_to_openai
from proxy.translate.message_to_completion import message_to_completion


def claude_message(content: list, stop_reason: str = "end_turn", **usage: int) -> bytes:
    return orjson.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-served",
                         "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                         "usage": {"input_tokens": 10, "output_tokens": 5, **usage}})


def gpt_completion(message: dict, finish_reason: str = "stop", **usage: object) -> bytes:
    return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-served",
                         "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                      "finish_reason": finish_reason}],
                         "usage": {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36, **usage}})


def test_claudes_text_and_tool_use_become_one_chat_message() -> None:
    out = orjson.loads(message_to_completion(claude_message([
        {"type": "text", "text": "Let me look. "}, {"type": "text", "text": "One moment."},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": [1, "é"]}}], "tool_use")))
    assert out["id"] == "msg_1" and out["model"] == "claude-served" and out["object"] == "chat.completion"
    [choice] = out["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look. One moment."
    assert choice["message"]["tool_calls"] == [{"id": "toolu_1", "type": "function",
                                               "function": {"name": "f", "arguments": '{"x":[1,"é"]}'}}]


def test_claudes_tool_use_alone_has_null_content() -> None:
    out = orjson.loads(message_to_completion(claude_message(
        [{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "tool_use")))
    assert out["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("model_context_window_exceeded", "length"), ("something_new", "stop")])
def test_claudes_stop_reason_becomes_a_finish_reason(stop_reason: str, finish_reason: str) -> None:
    out = orjson.loads(message_to_completion(claude_message([{"type": "text", "text": "x"}], stop_reason)))
    assert out["choices"][0]["finish_reason"] == finish_reason


def test_claudes_usage_counts_cache_reads_and_writes_in_the_prompt() -> None:
    out = orjson.loads(message_to_completion(claude_message(
        [], cache_read_input_tokens=100, cache_creation_input_tokens=40)))
    assert out["usage"] == {"prompt_tokens": 150, "completion_tokens": 5, "total_tokens": 155,
                            "prompt_tokens_details": {"cached_tokens": 100}}


def test_gpts_answer_becomes_a_message() -> None:
    out = orjson.loads(completion_to_message(gpt_completion(
        {"content": "Checking.", "tool_calls": [{"id": "call_1", "type": "function",
                                                 "function": {"name": "f", "arguments": '{"x": 1}'}}]},
        "tool_calls", prompt_tokens_details={"cached_tokens": 12})))
    assert out == {
        "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-served",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 18, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 12,
                  "output_tokens": 6},
    }


@pytest.mark.parametrize(("finish_reason", "stop_reason"), [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal"),
    (None, "end_turn")])
def test_gpts_finish_reason_becomes_a_stop_reason(finish_reason: str | None, stop_reason: str) -> None:
    out = orjson.loads(completion_to_message(gpt_completion({"content": "x"}, finish_reason)))
    assert out["stop_reason"] == stop_reason


def test_gpts_refusal_is_text_and_broken_arguments_an_empty_input() -> None:
    out = orjson.loads(completion_to_message(gpt_completion(
        {"content": None, "refusal": "I can't help with that.",
         "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
        "content_filter")))
    assert out["content"] == [{"type": "text", "text": "I can't help with that."},
                              {"type": "tool_use", "id": "c", "name": "f", "input": {}}]


def test_claudes_error_becomes_openais() -> None:
    body = orjson.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}})
    status, out = error_to_openai(429, body)
    assert status == 429 and orjson.loads(out) == {"error": {
        "message": "Slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    overloaded = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert error_to_openai(529, overloaded)[0] == 503


def test_gpts_error_becomes_anthropics_by_status() -> None:
    body = orjson.dumps({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})
    status, out = error_to_anthropic(429, body)
    assert status == 429
    assert orjson.loads(out) == {"type": "error",
                                 "error": {"type": "rate_limit_error", "message": "Rate limit reached"}}
    for upstream, kind in ((400, "invalid_request_error"), (401, "authentication_error"), (404, "not_found_error"),
                           (500, "api_error"), (502, "api_error"), (503, "overloaded_error"),
                           (422, "invalid_request_error")):
        assert orjson.loads(error_to_anthropic(upstream, body)[1])["error"]["type"] == kind


def test_an_error_that_is_not_json_still_reaches_the_client_in_its_format() -> None:
    status, out = error_to_anthropic(502, b"<html>Bad gateway</html>")
    assert status == 502
    assert orjson.loads(out)["error"] == {"type": "api_error", "message": "The provider answered 502."}
    status, out = error_to_openai(503, b"")
    assert status == 503 and orjson.loads(out)["error"]["message"] == "The provider answered 503."

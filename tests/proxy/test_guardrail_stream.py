"""The stream guard on its own: text deltas filtered per choice/block wherever the chunks are cut, every other
event byte for byte, held text released before the closing event, and a block as the provider's error event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.guardrail_stream import StreamGuard
from proxy.guardrails.policy import compile_policy
from proxy.providers import WIRE_FORMATS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sse"
EMAIL = "bob.smith@example.org"
MASK_OUT = {"rules": [{"id": "out-email", "kind": "pii", "pii_types": ["email"], "scope": "output", "action": "mask"}]}
BLOCK_OUT = {"rules": [{"id": "no-x", "kind": "keywords", "keywords": ["project x"], "scope": "output",
                        "action": "block"}]}


def guard(operation: str, spec: dict[str, Any] = MASK_OUT, wire: str = "openai") -> StreamGuard:
    return StreamGuard(session=compile_policy(spec).new_session(), operation=operation, wire=WIRE_FORMATS[wire])


def run(g: StreamGuard, data: bytes, cuts: list[int]) -> bytes:
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return b"".join(g.feed(data[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)) + g.close()


def events(data: bytes) -> list[tuple[str | None, Any]]:
    out = []
    for raw in data.split(b"\n\n"):
        if not raw.strip():
            continue
        name = None
        payload: Any = None
        for line in raw.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                text = line[5:].strip()
                payload = text.decode() if text == b"[DONE]" else orjson.loads(text)
        out.append((name, payload))
    return out


def chat_stream(pieces: list[str]) -> bytes:
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [{**head, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def pieces_of(text: str, size: int = 3) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


REPLY = f"Sure: contact {EMAIL} for access, or ask the desk."


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_chat_deltas_are_masked_wherever_the_bytes_are_cut(cuts: list[int]) -> None:
    out = events(run(guard("chat"), chat_stream(pieces_of(REPLY)), cuts))
    text = "".join(p["choices"][0]["delta"].get("content") or "" for _, p in out
                   if isinstance(p, dict) and p.get("choices"))
    assert EMAIL not in text and "[EMAIL" in text
    assert text.startswith("Sure: contact ") and text.endswith(" for access, or ask the desk.")
    assert out[-1] == (None, "[DONE]")
    usage = out[-2][1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 9  # framing events as they were


def test_events_without_text_pass_byte_for_byte_and_a_clean_stream_is_unchanged() -> None:
    data = chat_stream(pieces_of("Nothing to hide here, friend."))
    out = run(guard("chat"), data, [])
    assert b'"usage":{"prompt_tokens":3' in out and out.endswith(b"data: [DONE]\n\n")
    text = "".join(p["choices"][0]["delta"].get("content") or "" for _, p in events(out)
                   if isinstance(p, dict) and p.get("choices"))
    assert text == "Nothing to hide here, friend."


def test_a_held_tail_is_released_with_the_finish_chunk() -> None:
    out = events(run(guard("chat"), chat_stream(pieces_of(f"mail {EMAIL}")), []))
    finish = next(p for _, p in out if isinstance(p, dict) and p.get("choices")
                  and p["choices"][0].get("finish_reason") == "stop")
    assert "[EMAIL" in finish["choices"][0]["delta"]["content"]


def test_anthropic_text_deltas_are_masked_and_released_before_the_block_stops() -> None:
    data = (FIXTURES / "anthropic_messages_stream.sse").read_bytes()
    original = events(data)
    text_events = [p for n, p in original if n == "content_block_delta" and p["delta"]["type"] == "text_delta"]
    assert text_events
    # The fixture's text, with an address spread over its deltas.
    reply = pieces_of(f"Write to {EMAIL} now.", 4)
    rebuilt = []
    for raw in data.split(b"\n\n"):
        if b"text_delta" in raw:
            continue
        if b"content_block_stop" in raw:
            rebuilt += [b"event: content_block_delta\ndata: " + orjson.dumps(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
                for p in reply]
        if raw.strip():
            rebuilt.append(raw)
    stream = b"\n\n".join(rebuilt) + b"\n\n"
    out = events(run(guard("messages", wire="anthropic"), stream, [5, 77, 300, 301]))
    names = [n for n, _ in out]
    text = "".join(p["delta"]["text"] for n, p in out if n == "content_block_delta"
                   and p["delta"]["type"] == "text_delta")
    assert EMAIL not in text and text.startswith("Write to [EMAIL") and text.endswith(" now.")
    last_delta = max(i for i, n in enumerate(names) if n == "content_block_delta")
    assert names[last_delta + 1] == "content_block_stop" and names[-1] == "message_stop"


def test_responses_done_events_repeat_the_text_as_sent() -> None:
    def event(name: str, **fields: Any) -> bytes:
        return f"event: {name}\n".encode() + b"data: " + orjson.dumps({"type": name, **fields}) + b"\n\n"

    part = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    full = f"Ask {EMAIL}."
    stream = b"".join([
        event("response.created", response={"id": "r", "output": []}),
        *(event("response.output_text.delta", **part, delta=p) for p in pieces_of(full)),
        event("response.output_text.done", **part, text=full),
        event("response.content_part.done", **part, part={"type": "output_text", "text": full}),
        event("response.output_item.done", output_index=0, item={"type": "message", "content": [
            {"type": "output_text", "text": full}]}),
        event("response.completed", response={"id": "r", "output": [{"type": "message", "content": [
            {"type": "output_text", "text": full}]}]}),
    ])
    out = events(run(guard("responses"), stream, [40, 41, 200]))
    sent = "".join(p["delta"] for n, p in out if n == "response.output_text.delta")
    assert EMAIL not in sent and "[EMAIL" in sent
    done = {n: p for n, p in out}
    assert done["response.output_text.done"]["text"] == sent
    assert done["response.content_part.done"]["part"]["text"] == sent
    assert done["response.output_item.done"]["item"]["content"][0]["text"] == sent
    assert done["response.completed"]["response"]["output"][0]["content"][0]["text"] == sent
    assert EMAIL not in repr(out)


def test_gemini_parts_are_masked_and_the_tail_joins_the_finishing_chunk() -> None:
    chunks = [{"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}]}
              for p in pieces_of(f"Reach {EMAIL} today")]
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    chunks[-1]["usageMetadata"] = {"promptTokenCount": 3, "candidatesTokenCount": 5}
    stream = b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)
    out = events(run(guard("generate_content", wire="gemini"), stream.replace(b"\r\n", b"\n"), [9, 10, 11]))
    text = "".join(part["text"] for _, p in out for part in p["candidates"][0]["content"]["parts"])
    assert EMAIL not in text and text.startswith("Reach [EMAIL") and text.endswith(" today")
    assert out[-1][1]["usageMetadata"]["candidatesTokenCount"] == 5


@pytest.mark.parametrize(("operation", "wire", "last"), [
    ("chat", "openai", (None, "error")), ("messages", "anthropic", ("error", "error")),
    ("responses", "openai", ("error", "error")),
])
def test_a_block_ends_the_stream_with_the_providers_error_event(operation: str, wire: str, last: tuple) -> None:
    g = guard(operation, BLOCK_OUT, wire)
    if operation == "chat":
        stream = chat_stream(pieces_of("Fine. Project X ships in May."))
    elif operation == "messages":
        stream = b"".join(b"event: content_block_delta\ndata: " + orjson.dumps(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}) + b"\n\n"
            for p in pieces_of("Fine. Project X ships in May."))
    else:
        stream = b"".join(b"event: response.output_text.delta\ndata: " + orjson.dumps(
            {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": p}) + b"\n\n"
            for p in pieces_of("Fine. Project X ships in May."))
    out = run(g, stream, [])
    assert g.ended and b"May" not in out and b"Project X" not in out
    name, payload = events(out)[-1]
    kind = "error" if "error" in payload and name is None else payload.get("type")
    assert (name, kind) == last
    assert b"content_policy_violation" in out and b"[DONE]" not in out
    assert g.feed(b"data: more\n\n") == b"" and g.close() == b""

"""What the simulated models say and how many tokens it costs: deterministic, so tests can
predict every number.

Token rules (the simulator's "tokenizer"):
- a text counts ceil(UTF-8 bytes / 4) tokens, the proxy's own estimate and close to real tokenizers;
- each chat message adds MESSAGE_TOKENS, and a chat prompt PRIMING_TOKENS, as OpenAI's do;
- an image, audio or file part counts MEDIA_TOKENS; tool definitions count as their JSON text;
- the reply is the first N words of REPLY (cycled), one output token per word.
"""

from __future__ import annotations

import base64
import struct
import zlib
from functools import lru_cache
from typing import Any

import orjson

BYTES_PER_TOKEN = 4
MESSAGE_TOKENS = 4
PRIMING_TOKENS = 3
MEDIA_TOKENS = 85
MEDIA_PART_TYPES = frozenset({
    "image", "image_url", "input_image", "input_audio", "audio", "document", "file", "input_file",
})
MAX_REPLY_WORDS = 4096

REPLY_TEXT = (
    "Here is a simulated answer from the Tokonomics test upstream. It reads like a real model reply, "
    "arrives one word at a time and costs exactly one output token per word, so every meter, price "
    "and budget downstream can be checked by hand without calling a paid provider."
)
REPLY = tuple(REPLY_TEXT.split())


def text_tokens(text: str) -> int:
    size = len(text) if text.isascii() else len(text.encode())
    return -(-size // BYTES_PER_TOKEN)


def json_tokens(value: object) -> int:
    return -(-len(orjson.dumps(value)) // BYTES_PER_TOKEN) if value else 0


def content_tokens(content: object) -> int:
    """A message's content: a string, a list of parts, or any other JSON counted as its text."""
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(_part_tokens(part) for part in content)
    return json_tokens(content)


def _part_tokens(part: object) -> int:
    if isinstance(part, str):
        return text_tokens(part)
    if not isinstance(part, dict):
        return json_tokens(part)
    if part.get("type") in MEDIA_PART_TYPES:
        return MEDIA_TOKENS
    text = part.get("text")
    if isinstance(text, str):
        return text_tokens(text)
    if "content" in part:  # tool results nest their own content
        return content_tokens(part["content"])
    return json_tokens(part)


def messages_tokens(messages: object) -> int:
    """Chat-style messages (OpenAI chat, Anthropic messages, Responses input items)."""
    if isinstance(messages, str):
        return MESSAGE_TOKENS + text_tokens(messages)
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        total += MESSAGE_TOKENS
        if isinstance(message, dict):
            total += content_tokens(message.get("content") if "content" in message else message)
            total += json_tokens(message.get("tool_calls"))
        else:
            total += content_tokens(message)
    return total


def chat_prompt_tokens(payload: dict[str, Any]) -> int:
    return PRIMING_TOKENS + messages_tokens(payload.get("messages")) + json_tokens(payload.get("tools"))


def completion_prompt_tokens(payload: dict[str, Any]) -> int:
    """A legacy completions prompt: a string, strings, a token array or token arrays."""
    prompt = payload.get("prompt")
    items = text_inputs(prompt)
    return sum(text_input_tokens(item) for item in items) if items else 0


def responses_input_tokens(payload: dict[str, Any]) -> int:
    instructions = payload.get("instructions")
    return (
        PRIMING_TOKENS
        + (text_tokens(instructions) if isinstance(instructions, str) else 0)
        + messages_tokens(payload.get("input"))
        + json_tokens(payload.get("tools"))
    )


def anthropic_input_tokens(payload: dict[str, Any]) -> int:
    return (
        PRIMING_TOKENS
        + content_tokens(payload.get("system"))
        + messages_tokens(payload.get("messages"))
        + json_tokens(payload.get("tools"))
    )


def reply_word_count(limit: object, default: int) -> int:
    """Words the model says: the default, or fewer when the request's output limit is lower."""
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return min(limit, default)
    return default


REPLY_PIECE_CHARS = 3  # an X-Sim-Reply text streams in pieces this long: every pattern in it spans chunks


@lru_cache(maxsize=256)
def reply_deltas(words: int, reply: str | None = None) -> tuple[str, ...]:
    """The reply as streamed: one word per delta, each after the first with its leading space; a text given
    with X-Sim-Reply in pieces of REPLY_PIECE_CHARS characters."""
    if reply is not None:
        return tuple(reply[i:i + REPLY_PIECE_CHARS] for i in range(0, len(reply), REPLY_PIECE_CHARS))
    return tuple(
        REPLY[index % len(REPLY)] if index == 0 else " " + REPLY[index % len(REPLY)] for index in range(words)
    )


@lru_cache(maxsize=256)
def reply_text(words: int, reply: str | None = None) -> str:
    return reply if reply is not None else "".join(reply_deltas(words))


def text_inputs(value: object) -> list[str | list[int]] | None:
    """An embeddings `input` or a completions `prompt` as a list of items (texts or token arrays),
    or None when malformed."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, int) for item in value):
            return [value]
        if all(isinstance(item, str | list) for item in value):
            return value
    return None


def text_input_tokens(item: str | list[int]) -> int:
    return max(1, text_tokens(item)) if isinstance(item, str) else len(item)


@lru_cache(maxsize=4096)
def _unit_vector(key: str, dimensions: int) -> tuple[float, ...]:
    # A tiny linear congruential generator seeded by the text: same text, same vector.
    state = zlib.crc32(key.encode()) or 1
    values = []
    for _ in range(dimensions):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        values.append(state / 0x3FFFFFFF - 1.0)
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    # Rounded through float32, as the real API's values are.
    return struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values)))


def embedding_vector(item: str | list[int], dimensions: int) -> tuple[float, ...]:
    return _unit_vector(item if isinstance(item, str) else str(item), dimensions)


@lru_cache(maxsize=4096)
def _base64_vector(key: str, dimensions: int) -> str:
    return base64.b64encode(struct.pack(f"<{dimensions}f", *_unit_vector(key, dimensions))).decode()


def embedding_base64(item: str | list[int], dimensions: int) -> str:
    """The vector as the API's `encoding_format: base64` sends it: little-endian float32 bytes."""
    return _base64_vector(item if isinstance(item, str) else str(item), dimensions)

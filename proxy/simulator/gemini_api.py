"""The fake Gemini API (generativelanguage.googleapis.com), in the wire format the `google-genai` SDK parses:
`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (`?alt=sse` as server-sent events,
else one JSON array), `:countTokens`, `:embedContent`, `:batchEmbedContents`; `GET /v1beta/models[/{model}]`.
The same under `/v1/`, which recent google-genai releases send.

usageMetadata as Google counts it: `promptTokenCount` includes `cachedContentTokenCount`; the thinking
(`thoughtsTokenCount`) and the tool-use prompt (`toolUsePromptTokenCount`) are counted beside the prompt and
the candidates, and `totalTokenCount` adds them all. `X-Sim-Prompt-Tokens` sets the prompt count (for a
long-context price tier), `X-Sim-Reasoning-Tokens` the thoughts, `X-Sim-Cached-Tokens` the cached part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from .call import Call
from .content import (
    MEDIA_TOKENS,
    MESSAGE_TOKENS,
    embedding_vector,
    json_tokens,
    reply_deltas,
    reply_text,
    reply_word_count,
    text_input_tokens,
    text_tokens,
)
from .errors import JSON, Wire, error_response

MODELS = (
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536, ("generateContent", "countTokens")),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536, ("generateContent", "countTokens")),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576, 8_192, ("generateContent", "countTokens")),
    ("gemini-embedding-001", "Gemini Embedding 001", 2_048, 1, ("embedContent", "countTokens")),
    ("text-embedding-004", "Text Embedding 004", 2_048, 1, ("embedContent",)),
)


def _model_json(model: str, name: str, input_limit: int, output_limit: int, methods: tuple[str, ...]) -> dict[str, Any]:
    return {"name": f"models/{model}", "version": "001", "displayName": name, "description": name,
            "inputTokenLimit": input_limit, "outputTokenLimit": output_limit,
            "supportedGenerationMethods": list(methods)}


MODELS_BODY = orjson.dumps({"models": [_model_json(*model) for model in MODELS]})


def model_and_method(call: Call) -> tuple[str, str]:
    """`gemini-2.5-flash:generateContent` from the path: (model, method)."""
    model, _, method = call.request.match_info["call"].rpartition(":")
    return model, method


def _part_tokens(part: object) -> int:
    if not isinstance(part, dict):
        return json_tokens(part)
    text = part.get("text")
    if isinstance(text, str):
        return text_tokens(text)
    if "inlineData" in part or "fileData" in part:
        return MEDIA_TOKENS
    return json_tokens(part)


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return MESSAGE_TOKENS + text_tokens(content)
    if not isinstance(content, dict):
        return 0
    parts = content.get("parts")
    return MESSAGE_TOKENS + (sum(_part_tokens(part) for part in parts) if isinstance(parts, list) else 0)


def prompt_tokens(payload: dict[str, Any]) -> int:
    contents = payload.get("contents")
    total = sum(_content_tokens(c) for c in contents) if isinstance(contents, list) else _content_tokens(contents)
    return total + _content_tokens(payload.get("systemInstruction")) + json_tokens(payload.get("tools"))


def usage_metadata(call: Call, *, candidates: int, final: bool = True) -> dict[str, Any]:
    controls = call.controls
    prompt = controls.prompt_tokens
    if prompt is None:
        prompt = prompt_tokens(call.payload) + controls.cached_tokens
    thoughts = controls.reasoning_tokens
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if final or candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt + candidates + thoughts + controls.tool_use_prompt_tokens
    if controls.cached_tokens:
        usage["cachedContentTokenCount"] = controls.cached_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if controls.cached_tokens:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": controls.cached_tokens}]
    if controls.tool_use_prompt_tokens:
        usage["toolUsePromptTokenCount"] = controls.tool_use_prompt_tokens
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _generation_config(payload: dict[str, Any]) -> dict[str, Any]:
    config = payload.get("generationConfig")
    return config if isinstance(config, dict) else {}


async def model_call(call: Call) -> web.StreamResponse:
    model, method = model_and_method(call)
    handler = _METHODS.get(method)
    if handler is None:
        return error_response(Wire.GEMINI, 404, f"Method {method!r} is not found for models/{model}.")
    return await handler(call, model)


async def generate_content(call: Call, model: str) -> web.StreamResponse:
    if not isinstance(call.payload.get("contents"), list | dict | str):
        return error_response(Wire.GEMINI, 400, "* GenerateContentRequest.contents: contents is not specified")
    words = reply_word_count(_generation_config(call.payload).get("maxOutputTokens"), call.controls.words)
    finish = "MAX_TOKENS" if words < call.controls.words else "STOP"
    response_id = call.state.new_id("sim")
    body = {
        "candidates": [{"content": {"parts": [{"text": reply_text(words, call.controls.reply)}],
                                    "role": "model"},
                        "finishReason": finish, "index": 0}],
        "usageMetadata": usage_metadata(call, candidates=words),
        "modelVersion": model,
        "responseId": response_id,
    }
    return call.json(body)


def _chunks(call: Call, model: str, words: int, finish: str, response_id: str) -> Iterator[dict[str, Any]]:
    deltas = reply_deltas(words, call.controls.reply) or ("",)
    for index, delta in enumerate(deltas):
        last = index == len(deltas) - 1
        candidate: dict[str, Any] = {"content": {"parts": [{"text": delta}], "role": "model"}, "index": 0}
        if last:
            candidate["finishReason"] = finish
        # Every chunk restates the usage so far; the last one is final.
        yield {"candidates": [candidate], "usageMetadata": usage_metadata(call, candidates=min(index + 1, words),
                                                                             final=last),
               "modelVersion": model, "responseId": response_id}


async def stream_generate_content(call: Call, model: str) -> web.StreamResponse:
    if not isinstance(call.payload.get("contents"), list | dict | str):
        return error_response(Wire.GEMINI, 400, "* GenerateContentRequest.contents: contents is not specified")
    words = reply_word_count(_generation_config(call.payload).get("maxOutputTokens"), call.controls.words)
    finish = "MAX_TOKENS" if words < call.controls.words else "STOP"
    chunks = _chunks(call, model, words, finish, call.state.new_id("sim"))
    if call.request.query.get("alt") == "sse":
        return await call.stream(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)
    return call.json(list(chunks))  # without alt=sse, Google sends the chunks as one JSON array


async def count_tokens(call: Call, model: str) -> web.StreamResponse:
    request = call.payload.get("generateContentRequest")
    payload = request if isinstance(request, dict) else call.payload
    total = prompt_tokens(payload)
    return call.json({"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]})


def _embed_texts(content: object) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    return " ".join(p["text"] for p in parts or () if isinstance(p, dict) and isinstance(p.get("text"), str))


def _embedding(call: Call, content: object) -> tuple[dict[str, Any], int]:
    text = _embed_texts(content)
    vector = embedding_vector(text, call.state.embedding_dimensions)
    return {"values": list(vector)}, text_input_tokens(text)


async def embed_content(call: Call, model: str) -> web.StreamResponse:
    embedding, tokens = _embedding(call, call.payload.get("content"))
    return call.json({"embedding": embedding, "usageMetadata": {"promptTokenCount": tokens,
                                                                "totalTokenCount": tokens}})


async def batch_embed_contents(call: Call, model: str) -> web.StreamResponse:
    requests = call.payload.get("requests")
    if not isinstance(requests, list) or not requests:
        return error_response(Wire.GEMINI, 400, "* BatchEmbedContentsRequest.requests: requests is not specified")
    embeddings, tokens = [], 0
    for request in requests:
        embedding, used = _embedding(call, request.get("content") if isinstance(request, dict) else None)
        embeddings.append(embedding)
        tokens += used
    return call.json({"embeddings": embeddings, "usageMetadata": {"promptTokenCount": tokens,
                                                                  "totalTokenCount": tokens}})


async def list_models(call: Call) -> web.StreamResponse:
    return web.Response(body=MODELS_BODY, content_type=JSON, headers=call.response_headers)


async def retrieve_model(call: Call) -> web.StreamResponse:
    model = call.request.match_info["model"]
    found = next((m for m in MODELS if m[0] == model), None)
    if found is None:
        return error_response(Wire.GEMINI, 404, f"models/{model} is not found for API version v1beta.")
    return call.json(_model_json(*found))


_METHODS = {
    "generateContent": generate_content,
    "streamGenerateContent": stream_generate_content,
    "countTokens": count_tokens,
    "embedContent": embed_content,
    "batchEmbedContents": batch_embed_contents,
}

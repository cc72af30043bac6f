"""What the load generators send: one OpenAI chat request, streamed or not, to each target."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

MODEL = "gpt-4o-mini"
BENCH_KEY = "mk_bench_0123456789abcdefghijklmnopqrstuv"
UPSTREAM_KEY = "sk-bench-simulator"
# Attribution that puts each call under the account, tenant, feature and key budgets at once.
ATTRIBUTION = {"X-Feature-Name": "bench", "X-Tenant-ID": "tenant-1", "X-Tokonomics-Tags": "run=bench"}


def chat_body(*, stream: bool, max_tokens: int = 64) -> bytes:
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Summarise the quarterly report in three sentences."},
        ],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


@dataclass(slots=True, frozen=True)
class Target:
    """Where a load goes: the simulator itself (direct), Tokonomics, or a LiteLLM proxy."""

    name: str
    url: str  # the chat completions URL
    headers: dict[str, str] = field(default_factory=dict)


def direct_target(simulator_url: str) -> Target:
    return Target("direct", f"{simulator_url}/v1/chat/completions", {"Authorization": f"Bearer {UPSTREAM_KEY}"})


def proxy_target(name: str, proxy_url: str) -> Target:
    return Target(name, f"{proxy_url}/proxy/openai/chat/completions",
                  {"Authorization": f"Bearer {BENCH_KEY}", **ATTRIBUTION})


def litellm_target(litellm_url: str, master_key: str) -> Target:
    return Target("litellm", f"{litellm_url}/v1/chat/completions", {"Authorization": f"Bearer {master_key}"})


@dataclass(slots=True, frozen=True)
class Mode:
    name: str  # "json" or "stream"
    bodies: tuple[bytes, ...]  # sent in turn
    stream: bool


JSON = Mode("json", (chat_body(stream=False),), False)
STREAM = Mode("stream", (chat_body(stream=True),), True)
MIXED = Mode("mixed", (chat_body(stream=False), chat_body(stream=True)), True)

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandParser

FEATURES = ["support-bot", "summarize", "search", "claims-triage"]
TENANTS = ["globex", "initech", "umbrella", "hooli", "stark"]
CALLS = [
    ("openai", "/chat/completions", "gpt-4o-mini", "openai"),
    ("openai", "/chat/completions", "gpt-4o", "openai"),
    ("anthropic", "/v1/messages", "claude-sonnet-4-5", "anthropic"),
    ("anthropic", "/v1/messages", "claude-3-5-haiku-latest", "anthropic"),
    ("openai", "/embeddings", "text-embedding-3-small", "embeddings"),
    ("vllm-internal", "/chat/completions", "llama-3.1-70b-instruct", "openai"),
    # Gemini's native API, as google-genai calls it: the model in the path, the key in x-goog-api-key.
    ("gemini-native", "/v1beta/models/gemini-2.5-flash:generateContent", "gemini-2.5-flash", "gemini"),
    ("gemini-native", "/v1beta/models/gemini-2.5-pro:generateContent", "gemini-2.5-pro", "gemini"),
    ("gemini-native", "/v1beta/models/gemini-embedding-001:batchEmbedContents", "gemini-embedding-001",
     "gemini-embeddings"),
]


def call_path(path: str, kind: str, stream: bool) -> str:
    """The path of one demo call: a streamed Gemini call is streamGenerateContent with alt=sse."""
    if kind == "gemini" and stream:
        return path.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
    return path


def _body(kind: str, model: str, stream: bool) -> dict[str, Any]:
    # One in four carries an email address, which the demo account's guardrails mask before the provider sees it.
    question = random.choice(["Summarise this ticket.", "Classify the claim.", "Draft a polite reply.",
                              "Draft a polite reply to jane.doe@example.com about her claim."])
    if kind == "embeddings":
        return {"model": model, "input": question}
    if kind == "gemini-embeddings":
        return {"requests": [{"model": f"models/{model}", "content": {"parts": [{"text": question}]}}]}
    if kind == "gemini":
        return {"contents": [{"role": "user", "parts": [{"text": question}]}],
                "generationConfig": {"maxOutputTokens": 64, "thinkingConfig": {"thinkingBudget": 128}}}
    body: dict[str, Any] = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": question}]}
    if stream:
        body["stream"] = True
    return body


class Command(BaseCommand):
    help = "Send a slow trickle of realistic calls through the proxy so the demo dashboards move."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", default="http://127.0.0.1:8000")
        parser.add_argument("--key", default="mk_demo_0123456789abcdefghijklmnopqrstuv")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between calls")
        parser.add_argument("--count", type=int, default=0, help="stop after this many calls (0 = forever)")

    def handle(self, *args: Any, site: str, key: str, interval: float, count: int, **options: Any) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per demo call is noise
        with httpx.Client(timeout=30) as client:
            for n in itertools.count(1):
                provider, path, model, kind = random.choice(CALLS)
                stream = "embeddings" not in kind and random.random() < 0.4
                gemini = kind.startswith("gemini")
                headers = {
                    **({"x-goog-api-key": key} if gemini else {"Authorization": f"Bearer {key}"}),
                    "X-Feature-Name": random.choice(FEATURES),
                    "X-Tenant-ID": random.choice(TENANTS),
                    "X-Tokonomics-Tags": f"intent={random.choice(['answer', 'classify'])}",
                }
                if kind == "anthropic":
                    headers["anthropic-version"] = "2023-06-01"
                if kind == "gemini":
                    headers["X-Sim-Reasoning-Tokens"] = str(random.randint(0, 120))  # the simulator's thinking
                url = f"{site}/proxy/{provider}{call_path(path, kind, stream)}"
                try:
                    with client.stream("POST", url, json=_body(kind, model, stream),
                                       headers=headers) as response:
                        response.read()
                except httpx.HTTPError as exc:
                    self.stderr.write(f"demo call failed: {exc}")
                if count and n >= count:
                    return
                time.sleep(interval * random.uniform(0.5, 1.5))

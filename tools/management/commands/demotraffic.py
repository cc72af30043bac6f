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
    # The demo config's routes (tokonomics/demo.yaml): support-default's first target (gpt-4o) is made to fail
    # with a 503, so the call falls back to gpt-4o-mini; cheap-chat picks the cheaper target (routing saved).
    ("openai", "/chat/completions", "support-default", "route-fallback"),
    ("openai", "/chat/completions", "cheap-chat", "openai"),
]
# The first calls of a demo: a fallback and a lowest-cost route, so the dashboard shows both at first start.
FIRST_CALLS = CALLS[-2:]


# A question asked again and again at temperature 0: the demo account's response cache answers it from the
# second time on, so its dashboard shows what the cache saved from the first minute.
FAQ_BODY: dict[str, Any] = {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "What are your opening hours?"}]}
FAQ_SHARE = 0.1


def call_path(path: str, kind: str, stream: bool) -> str:
    """The path of one demo call: a streamed Gemini call is streamGenerateContent with alt=sse."""
    if kind == "gemini" and stream:
        return path.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
    return path


def _body(kind: str, model: str, stream: bool) -> dict[str, Any]:
    question = random.choice(["Summarise this ticket.", "Classify the claim.", "Draft a polite reply."])
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
                provider, path, model, kind = FIRST_CALLS[n - 1] if n <= len(FIRST_CALLS) else random.choice(CALLS)
                stream = "embeddings" not in kind and random.random() < 0.4
                # Right after the first calls: the FAQ twice (a miss, then a hit); later, now and then.
                first_faq = len(FIRST_CALLS) < n <= len(FIRST_CALLS) + 2
                faq = first_faq or (n > len(FIRST_CALLS) + 2 and random.random() < FAQ_SHARE)
                if faq:
                    provider, path, model, kind, stream = "openai", "/chat/completions", "gpt-4o-mini", "faq", False
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
                if kind == "route-fallback":  # the simulator fails the route's first target only
                    headers.update({"X-Sim-Status": "503", "X-Sim-Fail-Model": "gpt-4o"})
                url = f"{site}/proxy/{provider}{call_path(path, kind, stream)}"
                try:
                    body = FAQ_BODY if faq else _body(kind, model, stream)
                    with client.stream("POST", url, json=body, headers=headers) as response:
                        response.read()
                except httpx.HTTPError as exc:
                    self.stderr.write(f"demo call failed: {exc}")
                if count and n >= count:
                    return
                time.sleep(interval * random.uniform(0.5, 1.5))

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
]


def _body(kind: str, model: str, stream: bool) -> dict[str, Any]:
    question = random.choice(["Summarise this ticket.", "Classify the claim.", "Draft a polite reply."])
    if kind == "embeddings":
        return {"model": model, "input": question}
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
                stream = kind != "embeddings" and random.random() < 0.4
                headers = {
                    "Authorization": f"Bearer {key}",
                    "X-Feature-Name": random.choice(FEATURES),
                    "X-Tenant-ID": random.choice(TENANTS),
                    "X-Tokonomics-Tags": f"intent={random.choice(['answer', 'classify'])}",
                }
                if kind == "anthropic":
                    headers["anthropic-version"] = "2023-06-01"
                try:
                    with client.stream("POST", f"{site}/proxy/{provider}{path}", json=_body(kind, model, stream),
                                       headers=headers) as response:
                        response.read()
                except httpx.HTTPError as exc:
                    self.stderr.write(f"demo call failed: {exc}")
                if count and n >= count:
                    return
                time.sleep(interval * random.uniform(0.5, 1.5))

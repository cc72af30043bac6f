from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from proxy.simulator import serve


class Command(BaseCommand):
    help = "Run the built-in LLM simulator upstream (OpenAI and Anthropic wire formats)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument("--latency-ms", type=float, default=0)
        parser.add_argument("--chunk-delay-ms", type=float, default=0)

    def handle(self, *args: Any, host: str, port: int, latency_ms: float, chunk_delay_ms: float, **kw: Any) -> None:
        self.stdout.write(f"LLM simulator on http://{host}:{port} (OpenAI: /v1, Anthropic: /v1/messages)")
        serve(host=host, port=port, latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms)

"""Command-line options shared by `python -m proxy.simulator` and `manage.py simulator`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DESCRIPTION = "Run Tokonomics' built-in LLM simulator: fake OpenAI and Anthropic APIs for demos, tests and benchmarks."
SERVE_OPTIONS = ("host", "port", "latency_ms", "chunk_delay_ms", "reply_words", "fixtures_dir")


def _non_negative(kind: type[float] | type[int]) -> Any:
    def parse(value: str) -> float | int:
        number = kind(value)
        if number < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {value}")
        return number

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_non_negative(int), default=8100, help="port to listen on (default: 8100)")
    parser.add_argument("--latency-ms", type=_non_negative(float), default=0,
                        help="delay before every answer, i.e. time to first byte (default: 0)")
    parser.add_argument("--chunk-delay-ms", type=_non_negative(float), default=0,
                        help="delay between streamed events (default: 0)")
    parser.add_argument("--reply-words", type=_non_negative(int), default=24,
                        help="words in a reply, unless the request's output limit is lower (default: 24)")
    parser.add_argument("--fixtures-dir", type=Path, default=None,
                        help="directory of recordings for X-Sim-Fixture (default: tests/fixtures/sse)")


def serve_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed options `serve()` takes, from an argparse namespace's or a Django command's options."""
    return {name: options[name] for name in SERVE_OPTIONS if options.get(name) is not None}

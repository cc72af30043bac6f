"""`python -m proxy.simulator --port 8100 [--latency-ms N] [--chunk-delay-ms N]`: no Django needed."""

from __future__ import annotations

import argparse

from .cli import DESCRIPTION, add_arguments, serve_options
from .server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m proxy.simulator", description=DESCRIPTION)
    add_arguments(parser)
    serve(**serve_options(vars(parser.parse_args(argv))))


if __name__ == "__main__":
    main()

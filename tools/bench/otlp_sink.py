"""An OTLP/HTTP receiver that accepts every export and discards it: where the benchmark's spans go
(`python -m tools.bench.inprocess --otel`), run as a process of its own so its CPU is not the proxy's.

    .venv/bin/python -m tools.bench.otlp_sink --port 4318
"""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector serves the exporter

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse: everything accepted
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=4318)
    ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), _Discard).serve_forever()


if __name__ == "__main__":
    main()

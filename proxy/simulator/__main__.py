import argparse

from . import serve

parser = argparse.ArgumentParser(description="Tokonomics' built-in LLM simulator (OpenAI and Anthropic formats).")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8100)
parser.add_argument("--latency-ms", type=float, default=0)
parser.add_argument("--chunk-delay-ms", type=float, default=0)
args = parser.parse_args()
serve(host=args.host, port=args.port, latency_ms=args.latency_ms, chunk_delay_ms=args.chunk_delay_ms)

"""Added latency of the `tokonomics run` forwarder: 200 chat calls straight to the simulator, 200 through the
forwarder to it (same client, keep-alive), medians compared. `python -m tools.bench.forwarder_latency`
(with DJANGO_SETTINGS_MODULE and the settings' secrets set, as for any module of the product)."""

from __future__ import annotations

import statistics
import time

import httpx

from proxy.simulator import SimulatorThread
from tokonomics.cli.forwarder import Forwarder

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}

def timed(client: httpx.Client, url: str, n: int = 200) -> list[float]:
    out = []
    for _ in range(20):
        client.post(url, json=BODY)
    for _ in range(n):
        started = time.perf_counter()
        response = client.post(url, json=BODY)
        out.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.text[:300]}")
    return out


def main() -> None:
    with SimulatorThread(port=0) as sim:
        fwd = Forwarder(upstream=sim.base_url, session_headers={"X-Tokonomics-Session": "bench"}).start()
        with httpx.Client(timeout=10, headers={"Authorization": "Bearer sk-test"}) as client:
            for rnd in range(3):
                direct = timed(client, f"{sim.base_url}/v1/chat/completions")
                via = timed(client, f"{fwd.url}/v1/chat/completions")
                added = (statistics.median(via) - statistics.median(direct)) * 1e3
                print(f"round {rnd}: direct median {statistics.median(direct) * 1e3:.3f} ms, "
                      f"via forwarder {statistics.median(via) * 1e3:.3f} ms, added {added:.3f} ms")
        fwd.stop()


if __name__ == "__main__":
    main()

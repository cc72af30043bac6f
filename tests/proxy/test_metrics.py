"""/metrics (Prometheus text, CONTRACT §5) counts requests, tokens, cost and overhead, and its labels stay
bounded whatever clients send (CONTRACT §1, §5): provider and model come from the
account's configuration and the price catalogue, else `unknown`; feature and environment are cleaned and
capped per process."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from billing.models import PriceOverride
from proxy import metrics

from ..support import KEY, ProxyProcess, Stack, chat, make_account, make_key

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def worker(transactional_db, simulator, plans) -> Iterator[ProxyProcess]:
    """A proxy worker of its own: its /metrics holds only what this test sent."""
    account = make_account("acme", simulator, plans["pro"])
    make_key(account, KEY)
    PriceOverride.objects.create(account=account, provider="vllm-internal", model="house-llama",
                                 input_per_mtok=Decimal(0), output_per_mtok=Decimal(1))
    with ProxyProcess() as process:
        yield process


def _series_lines(worker: ProxyProcess) -> list[str]:
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    return [line for line in text.splitlines() if line.startswith("tokonomics_")]


def _flood(worker: ProxyProcess, client: httpx.Client, tag: str, count: int) -> None:
    """Made-up provider slugs (401 and 403), models, features and environments, `count` of each."""
    auth = {"Authorization": f"Bearer {KEY}"}
    for i in range(count):
        made_up = f"{tag}-{i}"
        assert client.post(f"{worker.url}/proxy/{made_up}/chat/completions", json=CHAT,
                           headers=auth).status_code == 403
        assert client.post(f"{worker.url}/proxy/{made_up}/chat/completions", json=CHAT,
                           headers={"Authorization": "Bearer mk_" + "x" * 40}).status_code == 401
        assert client.post(f"{worker.url}/proxy/openai/chat/completions", json={**CHAT, "model": made_up},
                           headers={**auth, "X-Feature-Name": made_up, "X-Environment": made_up}).status_code == 200


def test_made_up_slugs_models_features_and_environments_add_no_series(worker: ProxyProcess) -> None:
    with httpx.Client(timeout=10) as client:
        auth = {"Authorization": f"Bearer {KEY}"}
        for model, provider in (("gpt-4o-mini", "openai"), ("house-llama", "vllm-internal")):
            response = client.post(f"{worker.url}/proxy/{provider}/chat/completions", json={**CHAT, "model": model},
                                   headers=auth)
            assert response.status_code == 200
        # Past every per-process cap: from here on, nothing a client makes up adds a series.
        _flood(worker, client, "first", metrics.FEATURE_LIMIT + 5)
        before = _series_lines(worker)
        _flood(worker, client, "second", 40)
        after = _series_lines(worker)
    assert len(after) == len(before), sorted(set(after) - set(before))[:5]
    # Features and environments seen before the caps keep their labels; made-up slugs and models never had any.
    assert not [line for line in after if 'provider="first-' in line or 'model="first-' in line
                or '"second-' in line]
    text = "\n".join(after)
    assert 'provider="unknown"' in text and 'model="unknown"' in text
    # Configured providers and known models keep their own labels.
    assert 'model="gpt-4o-mini",provider="openai"' in text
    assert 'model="house-llama",provider="vllm-internal"' in text
    assert 'feature="other"' in text and 'environment="other"' in text


@pytest.mark.parametrize(("raw", "label"), [
    ("support-bot", "support-bot"),
    ("line\nbreak\r\x00\x1b[31m", "linebreak[31m"),
    ("next\x85line\x7f", "next\x85line"),  # C1 is kept: in latin-1-read UTF-8 it is part of a letter
    ("\x01\x02", "other"),  # nothing printable left: one shared value, not an empty one
    ("é" * 300, "é" * metrics.LABEL_MAX_CHARS),
])
def test_a_client_label_is_cleaned_of_control_characters_and_cut(raw: str, label: str) -> None:
    assert metrics.BoundedLabel(1000)(raw) == label


def test_a_client_label_past_the_cap_is_other() -> None:
    bounded = metrics.BoundedLabel(2)
    assert [bounded(v) for v in ("a", "b", "c", "a", "", "d")] == ["a", "b", "other", "a", "", "other"]


def test_metrics_count_requests_tokens_cost_and_overhead(stack: Stack, settings) -> None:
    for i in range(3):
        chat(stack, **{"X-Feature-Name": f"f{i % 2}"})
    text = httpx.get(f"{stack.proxy}/metrics").text
    assert 'tokonomics_requests_total{environment="production",feature="f0",model="gpt-4o-mini",' in text
    assert 'tokonomics_tokens_total{' in text and 'type="input"' in text and 'type="output"' in text
    assert "tokonomics_cost_usd_total{" in text
    assert 'tokonomics_account_cost_usd_total{account="acme"}' in text  # by the slug an admin chose
    assert "tokonomics_proxy_overhead_seconds_bucket{" in text
    assert "tenant" not in text.split("tokonomics_requests_total")[1].split("\n")[0]

    settings.TOKONOMICS_METRICS_TOKEN = "s3cret"
    assert httpx.get(f"{stack.proxy}/metrics").status_code == 401
    assert httpx.get(f"{stack.proxy}/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_the_redis_breaker_gauge_follows_the_breaker_and_counts_openings() -> None:
    from prometheus_client import REGISTRY

    from proxy.breaker import CircuitBreaker

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    from proxy import metrics

    # The gauge is the process's: a breaker another test left open in this process must not count here.
    metrics.redis_breaker_open.set(0)
    opened = sample("tokonomics_redis_breaker_opens_total")
    breaker = CircuitBreaker(pause_seconds=60, failures_to_open=2)
    breaker.trip()
    assert sample("tokonomics_redis_breaker_open") == 0
    breaker.trip()
    breaker.trip()  # still open: one opening
    assert sample("tokonomics_redis_breaker_open") == 1
    assert sample("tokonomics_redis_breaker_opens_total") == opened + 1
    breaker.reset()
    assert sample("tokonomics_redis_breaker_open") == 0


def test_a_stopped_worker_leaves_no_open_breaker_behind(tmp_path) -> None:
    """With several workers (PROMETHEUS_MULTIPROC_DIR), a worker's breaker gauge goes with it at shutdown."""
    import subprocess
    import sys

    from ..support import REPO, process_env

    code = """if True:
        import asyncio, glob, os, django
        django.setup()
        from proxy.app import lifespan
        from proxy.breaker import CircuitBreaker
        from proxy.exposition import metrics_text
        CircuitBreaker(failures_to_open=1).trip()
        print("open" if "tokonomics_redis_breaker_open 1.0" in metrics_text().decode() else "closed")
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        async def receive(): return next(messages)
        async def send(message): pass
        asyncio.run(lifespan({"type": "lifespan"}, receive, send))
        shared = glob.glob(os.environ["PROMETHEUS_MULTIPROC_DIR"] + "/*")
        print(sorted(os.path.basename(p).split("_")[0] for p in shared))
    """
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**process_env(DJANGO_SETTINGS_MODULE="tokonomics.settings"),
                                 "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    opened, files = result.stdout.splitlines()
    assert opened == "open"
    assert "gauge" not in files and "counter" in files  # counters stay: they add up over dead workers too

"""The proxy worker (`tokonomics.proxy_asgi`): the proxy with /healthz and /metrics in a process that
loads none of the web app, so that each of a production's proxy workers stays small."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest

from ..support import KEY, REPO, ProxyProcess, Stack, process_env

# Loaded by the web app and never needed by the proxy: any of them in a proxy worker is memory lost per worker.
WEB_ONLY_MODULES = (
    "celery", "kombu", "ninja", "django.contrib.admin", "django.contrib.sessions", "django.contrib.messages",
    "django.contrib.staticfiles", "whitenoise", "django_htmx", "httpx", "alerts.notifiers", "tokonomics.urls",
)


@pytest.fixture
def worker(stack: Stack) -> Iterator[ProxyProcess]:
    with ProxyProcess("tokonomics.proxy_asgi:application", TOKONOMICS_METRICS_TOKEN="scrape-me") as process:
        yield process


def test_proxy_worker_loads_none_of_the_web_app_while_it_serves(stack: Stack) -> None:
    probe = Path(__file__).with_name("proxy_worker_probe.py")
    done = subprocess.run([sys.executable, str(probe), KEY, *WEB_ONLY_MODULES], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=process_env())
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["statuses"] == [200, 200, 200, 401, 200, 404]
    assert seen["web_only_loaded"] == []


def test_proxy_worker_serves_both_sdks_and_records_their_usage(worker: ProxyProcess) -> None:
    chat = openai.OpenAI(base_url=f"{worker.url}/proxy/openai", api_key=KEY, max_retries=0)
    raw = chat.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=20,
        extra_headers={"X-Feature-Name": "worker-test"},
    )
    completion = raw.parse()
    messages = anthropic.Anthropic(base_url=f"{worker.url}/proxy/anthropic", api_key=KEY, max_retries=0)
    with messages.messages.stream(model="claude-sonnet-4-5", max_tokens=30,
                                  messages=[{"role": "user", "content": "hi"}]) as stream:
        streamed = stream.get_final_message()

    deadline = time.monotonic() + 5
    while True:  # each call settles, queueing its record, just after its last byte has left
        usage_ingest(max_seconds=2)
        by_id = {r.request_id: r for r in UsageRecord.objects.all()}
        if len(by_id) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    record = by_id[raw.headers["x-tokonomics-request-id"]]
    assert (record.feature, record.input_tokens, record.output_tokens, record.streamed) == (
        "worker-test", completion.usage.prompt_tokens, completion.usage.completion_tokens, False)
    assert record.cost_usd > 0 and raw.headers["x-tokonomics-cost-usd"] == f"{record.cost_usd:.9f}"
    streamed_record = next(r for r in by_id.values() if r.provider == "anthropic")
    assert (streamed_record.output_tokens, streamed_record.streamed) == (streamed.usage.output_tokens, True)


def test_proxy_worker_denies_in_the_callers_format(worker: ProxyProcess) -> None:
    chat = openai.OpenAI(base_url=f"{worker.url}/proxy/openai", api_key="mk_" + "x" * 40, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        chat.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.body["type"] == "authentication_error"


def test_proxy_worker_health_and_metrics(worker: ProxyProcess) -> None:
    assert httpx.get(f"{worker.url}/healthz").json() == {"status": "ok"}
    assert httpx.post(f"{worker.url}/healthz").status_code == 405
    assert httpx.post(f"{worker.url}/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 405
    httpx.post(f"{worker.url}/proxy/openai/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
               json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]})

    assert httpx.get(f"{worker.url}/metrics").status_code == 401
    deadline = time.monotonic() + 5
    while True:  # the call's series are counted as it settles, just after its response has left
        scraped = httpx.get(f"{worker.url}/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        counted = [line for line in scraped.text.splitlines() if line.startswith("tokonomics_requests_total{")
                   and 'model="gpt-4o-mini"' in line and 'status="200"' in line]
        if counted or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(counted) == 1 and counted[0].endswith(" 1.0")


def test_proxy_worker_sends_the_web_app_elsewhere(worker: ProxyProcess) -> None:
    for path in ("/", "/admin/", "/api/v1/openapi.json", "/login/"):
        answer = httpx.get(f"{worker.url}{path}")
        assert answer.status_code == 404
        assert answer.json()["error"]["type"] == "not_found"
        assert "/proxy/" in answer.json()["error"]["message"]

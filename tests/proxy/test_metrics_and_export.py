"""/metrics (Prometheus text) and exportusage (CONTRACT §5)."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest
from django.core.management import call_command

from billing.usage.ledger import usage_ingest

from .conftest import KEY

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def _calls(stack, n: int = 3) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for i in range(n):
        response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {KEY}", "X-Feature-Name": f"f{i % 2}"})
        ids.append(response.headers["x-tokonomics-request-id"])
    return ids


def test_metrics_count_requests_tokens_cost_and_overhead(stack, settings) -> None:  # type: ignore[no-untyped-def]
    _calls(stack)
    text = httpx.get(f"{stack.proxy}/metrics").text
    assert 'tokonomics_requests_total{environment="production",feature="f0",model="gpt-4o-mini",' in text
    assert 'tokonomics_tokens_total{' in text and 'type="input"' in text and 'type="output"' in text
    assert "tokonomics_cost_usd_total{" in text
    assert "tokonomics_proxy_overhead_seconds_bucket{" in text
    assert "tenant" not in text.split("tokonomics_requests_total")[1].split("\n")[0]

    settings.TOKONOMICS_METRICS_TOKEN = "s3cret"
    assert httpx.get(f"{stack.proxy}/metrics").status_code == 401
    assert httpx.get(f"{stack.proxy}/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_exportusage_writes_only_records_to_stdout(stack, fmt) -> None:  # type: ignore[no-untyped-def]
    ids = _calls(stack)
    usage_ingest(max_seconds=1)
    out, err = io.StringIO(), io.StringIO()
    call_command("exportusage", "--account", "acme", "--format", fmt, stdout=out, stderr=err)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["request_id"] for r in rows] == ids
    assert rows[0]["account"] == "acme" and rows[0]["key"] == "main" and rows[0]["model"] == "gpt-4o-mini"
    assert set(rows[0]) >= {"served_model", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
                            "cost_usd", "latency_ms", "usage_source", "denied_scope", "streamed", "tags"}
    assert "exported 3" in err.getvalue()


def test_exportusage_time_filters(stack) -> None:  # type: ignore[no-untyped-def]
    _calls(stack, 2)
    usage_ingest(max_seconds=1)
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--since", "2999-01-01T00:00:00Z", stdout=out,
                 stderr=io.StringIO())
    assert out.getvalue() == ""
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--until", "2999-01-01", stdout=out, stderr=io.StringIO())
    assert len(out.getvalue().splitlines()) == 2

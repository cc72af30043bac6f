"""LOG_FORMAT=json: every line a server process (web app and proxy, Celery worker) writes is one JSON
object; the proxy logs one access line per call (request id, account, status, latency, cost) and no line
carries a key or a provider secret."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from billing.models import Budget
from tokonomics.log_format import JsonFormatter, SecretsRedacted

from ..support import KEY, collected_static_root, free_port, make_account, make_key, process_env

REPO = Path(__file__).resolve().parents[2]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
PROVIDER_SECRET = "sk-proj-THEPROVIDERSECRET0123456789"


def _serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """The web app and the proxy in one uvicorn process, as users run it, its own logs at INFO, both
    output streams kept."""
    port = free_port()
    out = tmp_path / "server.log"
    command = [sys.executable, "-m", "uvicorn", "tokonomics.asgi:application", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "info"]
    with out.open("wb") as sink:
        process = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                                   env=process_env(LOG_FORMAT="json", SECURE_SSL_REDIRECT="0",
                                                   STATIC_ROOT=collected_static_root(), **env))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url, out
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"uvicorn did not start: {out.read_text()[-2000:]}")
        time.sleep(0.1)


def test_every_line_is_json_with_an_access_line_per_call_and_no_key(transactional_db, simulator, plans,
                                                                     tmp_path: Path) -> None:
    account = make_account("acme", simulator, plans["pro"])
    make_key(account, KEY)
    Budget.objects.create(account=account, scope="feature", match="capped", period="month",
                          limit_usd=Decimal("0.000000001"), hard=True)
    process, url, out = _serve(tmp_path)
    try:
        auth = {"Authorization": f"Bearer {KEY}"}
        proxy = f"{url}/proxy/openai/chat/completions"
        with httpx.Client(timeout=10) as client:
            ok = client.post(proxy, json=CHAT, headers=auth)
            denied = client.post(proxy, json=CHAT, headers={**auth, "X-Feature-Name": "capped"})
            failed = client.post(proxy, json=CHAT, headers={**auth, "X-Sim-Status": "500"})
            unknown_key = client.post(proxy, json=CHAT, headers={"Authorization": "Bearer mk_live_" + "z" * 40})
            web = client.get(f"{url}/login/?next=/{KEY}")
            missing = client.get(f"{url}/no-such-page/{PROVIDER_SECRET}")
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert (ok.status_code, denied.status_code, failed.status_code, unknown_key.status_code) == (200, 429, 500, 401)
    assert web.status_code == 200 and missing.status_code == 404
    text = out.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line, or this fails
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    assert "mk_live" not in text and "mk_" not in text and "THEPROVIDERSECRET" not in text

    access = {line["request_id"]: line for line in lines if line["logger"] == "proxy.access"}
    by_status = {line["status"]: line for line in access.values()}
    assert set(by_status) == {200, 429, 500, 401}, lines
    assert ok.headers["x-tokonomics-request-id"] in access
    success = by_status[200]
    assert success["account"] == account.pk and success["provider"] == "openai" and success["model"] == "gpt-4o-mini"
    assert Decimal(success["cost_usd"]) > 0 and success["latency_ms"] >= 0 and success["input_tokens"] > 0
    assert by_status[429]["denied_scope"] == "feature_budget" and by_status[429]["account"] == account.pk
    assert by_status[500]["account"] == account.pk
    assert "account" not in by_status[401]
    # The web app's own access lines: our request id (sent back), the URL's pattern, never the URL.
    pages = {line["request_id"]: line for line in lines if line["logger"] == "web.access"}
    login = pages[web.headers["x-request-id"]]
    assert login["status"] == 200 and login["path"] == "login/"
    assert pages[missing.headers["x-request-id"]]["status"] == 404
    assert all("latency_ms" in line and line["method"] == "GET" for line in pages.values())
    # The server's own lines (uvicorn's start-up and access log) are JSON too.
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    # No content: the prompt never reaches a line.
    assert not any('"hi"' in json.dumps(line) for line in access.values())


def _record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, message, args, None)
    if exc:
        try:
            raise RuntimeError(f"upstream said no to {KEY}")
        except RuntimeError:
            record.exc_info = sys.exc_info()
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("secret", [KEY, "sk-ant-api03-abcdefghijklmnop", "AIzaSyA0123456789abcdefghijklmnop",
                                    "Bearer someopaquetoken123"])
def test_secrets_in_messages_arguments_fields_and_tracebacks_are_redacted(secret: str) -> None:
    record = _record("failed with %s", secret, exc=True, model=f"gpt {secret}", password="not a listed field")
    assert SecretsRedacted().filter(record)
    line = json.loads(JsonFormatter().format(record))
    text = json.dumps(line)
    assert secret.split()[-1] not in text and "[redacted]" in line["message"]
    assert "[redacted]" in line["exception"] and "[redacted]" in line["model"]
    assert "password" not in line  # only the listed extra fields become keys
    plain = logging.Formatter("%(message)s").format(_filtered(secret))
    assert secret.split()[-1] not in plain


def _filtered(secret: str) -> logging.LogRecord:
    record = _record("plain lines too: %s", secret, exc=True)
    SecretsRedacted().filter(record)
    return record


# What Celery writes itself rather than through logging, on SIGTERM (its start-up banner is left out by --quiet).
CELERY_SHUTDOWN_NOTICE = {"", "worker: Warm shutdown (MainProcess)"}


@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")  # send_task goes to the broker
def test_the_celery_worker_writes_json_lines(transactional_db, acme, tmp_path: Path) -> None:
    from tokonomics.celery import app

    out = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "tokonomics", "--quiet", "worker", "--pool", "solo",
               "--loglevel", "info", "--without-mingle", "--without-gossip"]
    with out.open("wb") as sink:
        worker = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                                  env=process_env(LOG_FORMAT="json"))
    try:
        deadline = time.monotonic() + 30
        while "ready." not in out.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, out.read_text()[-2000:]
            time.sleep(0.1)
        app.send_task("billing.tasks.usage_ingest_task")
        while "succeeded" not in out.read_text():
            assert time.monotonic() < deadline + 30, out.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    text = out.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line not in CELERY_SHUTDOWN_NOTICE]
    assert any(line["logger"] == "celery.app.trace" and "succeeded" in line["message"] for line in lines), lines
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)


def test_an_unknown_log_format_is_refused_at_start() -> None:
    code = "import django; django.setup()"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env=process_env(DJANGO_SETTINGS_MODULE="tokonomics.settings", LOG_FORMAT="yaml"))
    assert result.returncode != 0 and "LOG_FORMAT='yaml' must be plain or json" in result.stderr

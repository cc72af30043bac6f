"""End to end with a real Celery worker and beat on the Redis broker: a proxied call crosses a budget
threshold, beat's usage_ingest records it, and the alert reaches a local webhook receiver."""

from __future__ import annotations

import base64
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from alerts.models import AlertDelivery, AlertEvent
from billing.models import Budget, UsageRecord

from ..support import KEY, Stack
from .conftest import WebhookReceiver, webhook_channel

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 25.0  # with the 15 s wait for the webhook and the stop, the test stays under 60 s
MAX_ALERT_DELAY = 5.0


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """`celery -A tokonomics worker --beat` in its own process group, its log lines on a queue."""

    def __init__(self, tmp_path: Path) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),  # the pytest test database, not the one bin/test names
            "REDIS_URL": settings.REDIS_URL,
            "TOKONOMICS_SECRET_KEY": settings.SECRET_KEY,
            "TOKONOMICS_ENCRYPTION_KEY": base64.b64encode(settings.TOKONOMICS_ENCRYPTION_KEY).decode(),
            "DEBUG": "0",
            "ALLOWED_HOSTS": ",".join(settings.ALLOWED_HOSTS),
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "ALERT_RETRY_BASE_SECONDS": str(settings.ALERT_RETRY_BASE_SECONDS),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PYTEST_XDIST_WORKER", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tokonomics", "worker", "--beat", "--pool", "solo",
             "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule"),
             "--hostname", f"test-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_line(self, text: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None and self.lines.empty():
                raise RuntimeError("the worker exited:\n" + "".join(self.log[-40:]))
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.log.append(line)
            if text in line:
                return
        raise TimeoutError(f"no {text!r} from the worker in time:\n" + "".join(self.log[-40:]))

    def stop(self) -> None:
        # The whole group: beat runs in a child process of the worker.
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture
def worker(stack: Stack, tmp_path: Path) -> Iterator[Worker]:
    running = Worker(tmp_path)
    try:
        # Ready, and beat's once-a-second ingest already going round: what follows measures alerting only.
        deadline = time.monotonic() + STARTUP_TIMEOUT
        running.wait_for_line("ready.", deadline)
        running.wait_for_line("usage_ingest_task", deadline)
        yield running
    finally:
        running.stop()


def test_proxied_call_crossing_a_threshold_alerts_through_the_worker(
    stack: Stack, receiver: WebhookReceiver, worker: Worker
) -> None:
    Budget.objects.create(account=stack.account, scope="account", period="month", limit_usd=Decimal("0.000001"),
                          hard=False, alert_at=[100])
    webhook_channel(stack.account, receiver)
    response = httpx.post(f"{stack.proxy}/proxy/openai/chat/completions",
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"Authorization": f"Bearer {KEY}"})
    answered = time.monotonic()
    assert response.status_code == 200
    assert Decimal(response.headers["x-tokonomics-cost-usd"]) > Decimal("0.000001")

    [delivery] = receiver.wait_for(1, timeout=15)
    delay = delivery.arrived_at - answered
    print(f"\nwebhook arrived {delay:.2f} s after the proxied call's response (real worker, beat every 1 s)")
    assert delivery.problems == []
    assert delivery.payload["type"] == "budget.exhausted"
    assert delivery.payload["data"]["account"] == "acme"
    assert delay < MAX_ALERT_DELAY
    record = UsageRecord.objects.get(request_id=response.headers["x-tokonomics-request-id"])
    event = AlertEvent.objects.get()
    assert event.webhook_id == delivery.webhook_id
    # The worker claims the attempt before sending and records its outcome once the receiver has answered.
    deadline = time.monotonic() + 5
    while AlertDelivery.objects.filter(succeeded=False, error="sending…").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(d.attempt, d.succeeded) for d in AlertDelivery.objects.all()] == [(1, True)]
    assert record.cost_usd == Decimal(response.headers["x-tokonomics-cost-usd"])

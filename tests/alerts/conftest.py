"""Alert fixtures: a real local webhook receiver that verifies Standard Webhooks signatures, and a way to
move the live budget counters through the proxy's own settle script."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery._state import _set_task_join_will_block, task_join_will_block
from django.conf import settings
from django.db import connection

from alerts.models import AlertChannel, generate_webhook_secret
from proxy.budgets import usd_to_nanos
from proxy.directory import BudgetEntry
from proxy.quota import Quota, Reservation
from proxy.redis_pipeline import PipelinedRedis

from ..support import account_entry, key_entry

REPLAY_TOLERANCE_SECONDS = 300
BUDGET_TYPES = {"budget.threshold_crossed", "budget.exhausted", "budget.resolved", "budget.forecast"}


@dataclass
class Delivery:
    """One request the receiver got, and what it answered."""

    webhook_id: str
    timestamp: str
    body: bytes
    status: int
    arrived_at: float  # time.monotonic()
    problems: list[str]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


def _decimal_string(value: Any) -> bool:
    if not isinstance(value, str) or "e" in value.lower():
        return False
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return True


def _iso(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def payload_problems(payload: Any) -> list[str]:
    """What a receiver written from CONTRACT §6 alone would trip over in this body."""
    if not isinstance(payload, dict) or not {"type", "version", "timestamp", "data"} <= payload.keys():
        return [f"not an alert body: {payload!r}"]
    problems = []
    if not _iso(payload["timestamp"]):
        problems.append(f"timestamp {payload['timestamp']!r} is not ISO-8601 with a zone")
    data = payload["data"]
    if not isinstance(data, dict) or not isinstance(data.get("account"), str):
        return [*problems, f"data does not name the account: {data!r}"]

    def no_floats(value: Any, path: str) -> None:
        if isinstance(value, float):
            problems.append(f"{path} is a float ({value}); decimals travel as strings")
        elif isinstance(value, dict):
            for k, v in value.items():
                no_floats(v, f"{path}.{k}")

    no_floats(data, "data")
    if payload["type"] in BUDGET_TYPES:
        budget = data.get("budget")
        if not isinstance(budget, dict) or not {"scope", "match", "period", "limit_usd", "hard"} <= budget.keys():
            problems.append(f"data.budget incomplete: {budget!r}")
        else:
            if not _decimal_string(budget["limit_usd"]):
                problems.append(f"budget.limit_usd {budget['limit_usd']!r} is not a decimal string")
            if not isinstance(budget["hard"], bool):
                problems.append("budget.hard is not a boolean")
        if not isinstance(data.get("threshold_percent"), int) and payload["type"] != "budget.forecast":
            problems.append(f"threshold_percent {data.get('threshold_percent')!r}")
        if not _decimal_string(data.get("spent_usd")):
            problems.append(f"spent_usd {data.get('spent_usd')!r} is not a decimal string")
        if not _iso(data.get("period_start")):
            problems.append(f"period_start {data.get('period_start')!r}")
        if data.get("period_end") is not None and not _iso(data["period_end"]):
            problems.append(f"period_end {data.get('period_end')!r}")
    return problems


def verify_signature(*, secret: str, webhook_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """Standard Webhooks verification, written from the spec rather than from our notifier."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    for candidate in header.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), base64.b64encode(expected)):
            return True
    return False


class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1 that accepts only correctly signed, fresh webhooks
    (401 otherwise) with a well-formed body (400 otherwise). `fail_next` makes it answer 500 to that
    many valid deliveries first. With no secret it takes any JSON (a Slack-compatible endpoint)."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.fail_next = 0
        self.delay_seconds = 0.0  # a slow receiver widens race windows
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, problems = receiver._judge(self.headers, body)
                time.sleep(receiver.delay_seconds)
                # Recorded before answering: a sender that got the answer finds its delivery here.
                with receiver._changed:
                    receiver.deliveries.append(Delivery(
                        self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", ""), body, status,
                        time.monotonic(), problems,
                    ))
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _judge(self, headers: Any, body: bytes) -> tuple[int, list[str]]:
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, ["body is not JSON"]
        if self.secret is None:
            return 200, []
        webhook_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        if not webhook_id or not timestamp.isdigit():
            return 401, ["missing webhook-id or webhook-timestamp"]
        if abs(time.time() - int(timestamp)) > REPLAY_TOLERANCE_SECONDS:
            return 401, [f"stale timestamp {timestamp}"]
        if not verify_signature(secret=self.secret, webhook_id=webhook_id, timestamp=timestamp, body=body,
                                header=headers.get("webhook-signature", "")):
            return 401, ["bad signature"]
        problems = payload_problems(payload)
        if problems:
            return 400, problems
        with self._changed:
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500, []
        return 200, []

    @property
    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status == 200]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """The first `count` accepted deliveries, waiting up to `timeout` seconds for them."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.accepted) >= count, timeout=timeout)
            return self.accepted[:count]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=generate_webhook_secret()) as server:
        yield server


@pytest.fixture
def slack_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=None) as server:
        yield server


def webhook_channel(account: Any, receiver: WebhookReceiver, name: str = "hooks") -> AlertChannel:
    channel = AlertChannel(account=account, name=name, kind=AlertChannel.Kind.WEBHOOK, url=receiver.url)
    assert receiver.secret is not None
    channel.set_secret(receiver.secret)
    channel.save()
    return channel


def run_together(*jobs: Callable[[], object]) -> None:
    """Run the callables at the same moment, one thread each; re-raise the first failure."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []
    joins_blocked = task_join_will_block()

    def run(job: Callable[[], object]) -> None:
        try:
            barrier.wait()
            job()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)
        finally:
            connection.close()  # each thread has a connection of its own; the test database is dropped later

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Eager tasks applied side by side race on Celery's process-wide "joining would block" flag (set and
    # reset around every eager apply_async) and can leave it set, failing any later `.apply().get()`.
    _set_task_join_will_block(joins_blocked)
    if errors:
        raise errors[0]


@dataclass
class Spender:
    """Settles spend into an account's live budget counters with the proxy's own Quota and settle script,
    at a chosen `now` (the proxy picks the counters; nothing here builds a Redis key)."""

    account: Any
    key: Any = None
    calls: int = field(default=0)

    def __call__(self, usd: str | Decimal, *, now: datetime, feature: str = "", tenant: str = "") -> list[int]:
        budgets = tuple(
            BudgetEntry(b.pk, b.scope, b.match, b.period, usd_to_nanos(b.limit_usd), b.hard)
            for b in self.account.budgets.all()
        )
        entry = account_entry(self.account.pk, timezone=self.account.timezone, budgets=budgets)
        key = key_entry(self.key.pk if self.key else 0, account_id=self.account.pk,
                        name=self.key.name if self.key else "", environment="production")
        self.calls += 1
        rid = f"req_spend_{os.getpid()}_{id(self)}_{self.calls}"

        async def settle() -> list[int]:
            client = PipelinedRedis(settings.REDIS_URL, timeout=5)
            try:
                quota = Quota(client, reservation_ttl_ms=60_000)
                counters = quota.counters_for(entry, key, feature=feature, tenant=tenant, now=now.timestamp())
                # held=False: a settle with nothing reserved adds its cost once (settle_call.lua, mode "once").
                reservation = Reservation(rid, entry.id, key.id, counters, 0, 0, held=False)
                return await quota.settle(reservation=reservation, actual_nanos=usd_to_nanos(Decimal(usd)),
                                          actual_tokens=0, event=b"")
            finally:
                await client.close()

        return asyncio.run(settle())

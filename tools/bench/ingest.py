"""Ingestion throughput: usage events seeded into the accounts' Redis streams, then drained into PostgreSQL
by K ledger processes at once (each running billing/usage/ledger.py's `usage_ingest`, as a Celery worker
does), timed from the start signal to the last record committed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tokonomics_ingest python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tokonomics_ingest \\
        python -m tools.bench.ingest --events 40000 --accounts 16 --processes 1,2,4

It uses the benchmark's Redis databases (12-15, the first free one) and its own accounts (`ingest-bench-N`),
whose records and rollups it deletes before each run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[2]
FEATURES = ("support-bot", "search", "summaries", "code-review")
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5")


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokonomics.settings")
    import django

    django.setup()


def _event(account_id: int, n: int, now: float) -> dict[str, Any]:
    return {
        "request_id": f"req_ingestbench_{account_id}_{n}", "account_id": account_id, "key_id": None,
        "provider": "openai", "model": MODELS[n % len(MODELS)], "feature": FEATURES[n % len(FEATURES)],
        "tenant": f"tenant-{n % 7}", "environment": "production", "tags": {"run": "ingest"},
        "input_tokens": 1000 + n % 500, "output_tokens": 200 + n % 100, "cost_usd": "0.000450000",
        "latency_ms": 300, "status_code": 200, "created_at": now - (n % 86_400),
    }


def accounts_prepare(count: int) -> list[int]:
    from django.db.models import Model

    from billing.models import Account, Plan, UsageRecord, UsageTagRollup
    from billing.usage.rollups import ROLLUPS

    plan = Plan.objects.order_by("pk").first() or Plan.objects.create(
        name="Bench", slug="bench", price_usd_month=0, retention_days=90)
    ids = [Account.objects.get_or_create(slug=f"ingest-bench-{i}", defaults={"name": f"Ingest bench {i}",
                                                                             "plan": plan})[0].pk
           for i in range(count)]
    UsageRecord._base_manager.filter(account_id__in=ids).delete()
    rollups: list[type[Model]] = [*(r.hourly for r in ROLLUPS), *(r.daily for r in ROLLUPS), UsageTagRollup]
    for rollup in rollups:
        rollup._default_manager.filter(account_id__in=ids).delete()
    return ids


def events_seed(*, client: Any, account_ids: list[int], total: int) -> None:
    import orjson

    from proxy.quota import events_stream_key

    now = time.time()
    pipe = client.pipeline(transaction=False)
    for n in range(total):
        account_id = account_ids[n % len(account_ids)]
        pipe.xadd(events_stream_key(account_id), {"e": orjson.dumps(_event(account_id, n, now))})
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()


def _worker() -> None:
    """One ledger process: ready, then drains on the parent's word until told to stop (stdin closes)."""
    _django()
    from billing.usage.ledger import usage_ingest

    usage_ingest(max_seconds=0.1)  # the consumer groups made, the modules warm
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        if not usage_ingest(max_seconds=1.0):
            time.sleep(0.01)


def drain(*, processes: int, account_ids: list[int], total: int, env: dict[str, str], client: Any) -> float:
    """Seconds from the start signal until `total` records of these accounts are committed: the events are
    seeded once the processes are ready (their start and first ingest untimed, and before the events)."""
    from billing.models import UsageRecord
    from proxy.quota import events_stream_key

    workers = [subprocess.Popen([sys.executable, "-m", "tools.bench.ingest", "--worker"], cwd=BASE_DIR, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        events_seed(client=client, account_ids=account_ids, total=total)
        if UsageRecord.objects.filter(account_id__in=account_ids).exists():
            raise RuntimeError("records were written before the start signal")
        started = time.monotonic()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        # Polled in Redis, not by counting records: a count over the growing table every few milliseconds would
        # take CPU from the workers being timed. The ledger deletes an event only after its record is committed,
        # so empty streams mean every record is in; the count then checks it.
        streams = [events_stream_key(a) for a in account_ids]
        while True:
            pipe = client.pipeline(transaction=False)
            for stream in streams:
                pipe.xlen(stream)
            if not sum(pipe.execute()):
                break
            if time.monotonic() - started > 600:
                raise RuntimeError("the ledger did not drain the events within 10 minutes")
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        stored = UsageRecord.objects.filter(account_id__in=account_ids).count()
        if stored != total:
            raise RuntimeError(f"{stored:,} records stored of {total:,} events")
        return elapsed
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--accounts", type=int, default=16)
    parser.add_argument("--processes", default="1,2,4", help="ledger process counts to time, comma-separated")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker()
        return
    from tools.bench.environment import LOCK_KEY, REDIS_DBS, claim_redis_db

    server_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_url, client = claim_redis_db(server_url=server_url, databases=REDIS_DBS, hold_seconds=3600)
    os.environ["REDIS_URL"] = redis_url
    _django()
    from tools.scale import require_postgresql

    require_postgresql()
    env = {**os.environ, "REDIS_URL": redis_url}
    try:
        for processes in (int(p) for p in args.processes.split(",")):
            account_ids = accounts_prepare(args.accounts)
            client.flushdb()  # the benchmark's own database: the streams and groups of the last run
            client.set(LOCK_KEY, str(os.getpid()), ex=3600)
            seconds = drain(processes=processes, account_ids=account_ids, total=args.events, env=env, client=client)
            print(f"{processes} process{'es' if processes > 1 else ''}: {args.events:,} events across "
                  f"{args.accounts} accounts in {seconds:.2f} s → {args.events / seconds:,.0f} events/s", flush=True)
    finally:
        client.delete(LOCK_KEY)


if __name__ == "__main__":
    main()

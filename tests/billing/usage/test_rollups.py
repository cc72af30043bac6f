"""Rollups (hour and day tables of each) equal the records they summarise; an event ingested twice counts once."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Model, Q, Sum
from django.db.models.functions import TruncDay, TruncHour

from billing.models import LABEL_FIELDS, UsageRecord, UsageRollup, UsageTagRollup
from billing.usage import records
from billing.usage.records import usage_record_batch
from billing.usage.rollups import ROLLUPS, SUMS, cell_columns
from proxy.models import ApiKey

from ...support import make_key

HOUR = 3600
START = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC: 3.5 hours of records fall into five hours


def _events(account_id: int, keys: list[ApiKey], count: int = 400, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for n in range(count):
        key = rng.choice([*keys, None])
        status = rng.choice([200, 200, 200, 429, 500])
        cost = None if status == 200 and n % 17 == 0 else (
            "0" if status != 200 else str(Decimal(rng.randint(1, 10**7)) / 10**9))
        tags = rng.choice([{}, {"intent": "summarize"}, {"intent": "classify", "project": "claims"}])
        events.append({
            "request_id": f"req_rollup_{n}", "account_id": account_id, "key_id": key.pk if key else None,
            "feature": rng.choice(["", "support-bot", "search"]), "tenant": rng.choice(["", "globex", "initech"]),
            "environment": rng.choice(["production", "staging"]), "tags": tags,
            "provider": rng.choice(["openai", "anthropic"]), "model": rng.choice(["gpt-4o-mini", "claude-sonnet-4-5"]),
            "input_tokens": rng.randint(0, 5000), "output_tokens": rng.randint(0, 900),
            "cached_input_tokens": rng.randint(0, 100), "cache_write_tokens": rng.randint(0, 50),
            "reasoning_tokens": rng.randint(0, 40), "latency_ms": rng.randint(5, 3000), "status_code": status,
            "streamed": rng.random() < 0.5, "usage_source": rng.choice(["reported", "reported", "estimated"]),
            "cost_usd": cost, "created_at": START + rng.uniform(0, 3.5 * HOUR),
            # Some calls routed or downgraded: their saving and count add up in the rollups too.
            **({"requested_model": "support-default", "route": "support-default",
                "routing_saved_usd": str(Decimal(rng.randint(0, 10**6)) / 10**9),
                "downgraded_from": rng.choice(["", "gpt-4o"])} if n % 5 == 0 else {}),
        })
        if status == 200 and cost is not None and rng.random() < 0.2:  # a response-cache hit: free, and its saving
            events[-1].update(cost_usd="0", cache_hit=True, cache_saved_usd=cost)
    return events


def _record_sums(trunc: type[TruncHour | TruncDay], dimensions: tuple[str, ...]) -> dict[tuple, dict]:
    rows = (
        UsageRecord.objects.annotate(start=trunc("created_at"))
        .values("account_id", "start", *dimensions)
        .annotate(
            requests=Count("pk"), streamed_requests=Count("pk", filter=Q(streamed=True)),
            estimated_requests=Count("pk", filter=Q(usage_source="estimated")),
            unknown_cost_requests=Count("pk", filter=Q(cost_usd__isnull=True, status_code__lt=400)),
            input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"),
            cached_input_tokens=Sum("cached_input_tokens"), cache_write_tokens=Sum("cache_write_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"), cost_usd=Sum("cost_usd", default=Decimal(0)),
            latency_ms_total=Sum("latency_ms"),
            routing_saved_usd=Sum("routing_saved_usd", default=Decimal(0)),
            downgraded_requests=Count("pk", filter=~Q(downgraded_from="")),
            cache_hits=Count("pk", filter=Q(cache_hit=True)),
            cache_saved_usd=Sum("cache_saved_usd", default=Decimal(0)),
        )
    )
    sums = {}
    for row in rows:
        if "key_id" in row:
            row["key_id"] = row["key_id"] or 0  # the rollups keep "no key" as 0
        sums[tuple(row.pop(c) for c in ("account_id", "start", *dimensions))] = row
    return sums


def _rollup_sums(model: type[Model]) -> dict[tuple, dict]:
    cell = cell_columns(model)
    return {tuple(r.pop(c) for c in cell): r for r in model.objects.values(*cell, *SUMS)}


def _tag_sums_from_records() -> dict[tuple, tuple[int, Decimal]]:
    sums: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    for r in UsageRecord.objects.all():
        for tag, value in r.tags.items():
            cell = sums[(r.account_id, r.created_at.replace(minute=0, second=0, microsecond=0), tag, value)]
            cell[0] += 1
            cell[1] += r.cost_usd or 0
    return {k: (v[0], v[1]) for k, v in sums.items()}


def assert_rollups_match_records() -> None:
    """Every rollup, hour and day tables alike, holds exactly the sums of the records (all accounts)."""
    for rollup in ROLLUPS:
        assert _rollup_sums(rollup.hourly) == _record_sums(TruncHour, rollup.dimensions), rollup.hourly
        assert _rollup_sums(rollup.daily) == _record_sums(TruncDay, rollup.dimensions), rollup.daily
    tags = {(t.account_id, t.hour, t.tag, t.value): (t.requests, t.cost_usd) for t in UsageTagRollup.objects.all()}
    assert tags == _tag_sums_from_records()


@pytest.mark.django_db
def test_rollups_equal_the_records_and_a_repeated_batch_adds_nothing(acme) -> None:
    keys = [make_key(acme, f"mk_rollup_{n}_0123456789abcdefghijklmnopqrstuv", name=f"k{n}") for n in range(2)]
    events = _events(acme.pk, keys)
    assert usage_record_batch(events=events[:250]) == 250
    assert usage_record_batch(events=events[150:]) == 150  # overlaps the first batch by 100
    assert usage_record_batch(events=events) == 0
    assert UsageRecord.objects.count() == 400
    assert_rollups_match_records()
    assert UsageRollup.objects.values("hour").distinct().count() == 5
    for rollup in ROLLUPS:
        assert rollup.daily.objects.values("day").distinct().count() == 1
        assert sum(rollup.daily.objects.values_list("requests", flat=True)) == 400
    assert UsageTagRollup.objects.filter(tag="intent").count() >= 4


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_written_by_two_workers_at_once_counts_once(plans) -> None:
    from billing.models import Account

    account = Account.objects.create(slug="acme", name="Acme", plan=plans["pro"])
    events = _events(account.pk, [], count=300, seed=11)
    barrier = threading.Barrier(3)
    written: list[int] = []

    def worker() -> None:
        try:
            barrier.wait()
            written.append(usage_record_batch(events=events))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(written) == [0, 0, 300]
    assert_rollups_match_records()


# A record's own fields and its labels (the label set's id differs between accounts).
STORED_FIELDS = [*(f.name for f in UsageRecord._meta.concrete_fields if f.name not in ("id", "labels")),
                 *LABEL_FIELDS]


@pytest.mark.django_db
def test_the_copy_path_and_the_model_path_store_the_same_records_and_cells(acme, plans) -> None:
    """PostgreSQL stores through COPY and one SQL statement for the rollups; SQLite (the demo) through models and
    rollups summed in Python. The same events through each give the same records and the same cells."""
    from billing.models import Account

    globex = Account.objects.create(slug="globex", name="Globex", plan=plans["pro"])
    keys = [make_key(acme, f"mk_paths_{n}_0123456789abcdefghijklmnopqrstuvw", name=f"k{n}") for n in range(2)]
    events = _events(acme.pk, keys, count=300, seed=5)
    for event in events[::10]:  # what the ledger must not lose on either path
        event.update(attempts=[{"target": "openai/gpt-4o", "outcome": "503", "ms": 12}], tags={"t": "é\u2028"},
                     guardrail_hits=[{"rule": "pii-email", "action": "mask", "count": 2}], session="s-1",
                     key_id=999_999, reserved_usd="0.5", provider_cost_usd="0.000000001")
    known = {k.pk for k in keys}
    mirrored = [{**e, "request_id": "m" + e["request_id"], "account_id": globex.pk,
                 "key_id": None if e.get("key_id") in known else e.get("key_id")} for e in events]
    assert usage_record_batch(events=events) == 300
    assert records._store_models(mirrored, set()) == {globex.pk: 300}
    assert_rollups_match_records()
    ours = {r["request_id"]: r for r in UsageRecord.objects.filter(account=acme).values(*STORED_FIELDS)}
    theirs = {r["request_id"][1:]: {**r, "request_id": r["request_id"][1:]}
              for r in UsageRecord.objects.filter(account=globex).values(*STORED_FIELDS)}
    for request_id, record in ours.items():
        assert {**record, "account": globex.pk, "key": None} == {**theirs[request_id], "key": None}, request_id
    assert {r["key"] for r in ours.values()} - {None} == {k.pk for k in keys}  # known keys kept, unknown dropped
    for model in (UsageRollup, *(r.daily for r in ROLLUPS), UsageTagRollup):
        cell = [c for c in (cell_columns(model) if model is not UsageTagRollup else ("hour", "tag", "value"))
                if c not in ("account_id", "key_id")]
        sums = list(SUMS) if model is not UsageTagRollup else ["requests", "cost_usd", "tokens"]

        def totals(account: int, model: type[Model] = model, cell: list = cell, sums: list = sums) -> dict:
            rows = model.objects.filter(account_id=account).values(*cell).annotate(**{s: Sum(s) for s in sums})
            return {tuple(r[c] for c in cell): tuple(r[s] for s in sums) for r in rows}
        assert totals(acme.pk) == totals(globex.pk), model

"""`manage.py exportusage` (billing/exports.py, CONTRACT §5): the records alone on stdout, in JSON lines or CSV,
filtered by time, with client-supplied text never read as a formula."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from billing.usage.ledger import usage_ingest
from billing.usage.records import usage_record_batch

from ...support import Stack, chat, usage_event


def _calls(stack: Stack, n: int = 3) -> list[str]:
    return [chat(stack, **{"X-Feature-Name": f"f{i % 2}"}).headers["x-tokonomics-request-id"] for i in range(n)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_exportusage_writes_only_records_to_stdout(stack: Stack, fmt: str) -> None:
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


def test_exportusage_time_filters(stack: Stack) -> None:
    _calls(stack, 2)
    usage_ingest(max_seconds=1)
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--since", "2999-01-01T00:00:00Z", stdout=out,
                 stderr=io.StringIO())
    assert out.getvalue() == ""
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--until", "2999-01-01", stdout=out, stderr=io.StringIO())
    assert len(out.getvalue().splitlines()) == 2


@pytest.mark.django_db
def test_csv_cells_from_clients_are_text_and_numbers_stay_numbers(acme) -> None:
    usage_record_batch(events=[usage_event(
        acme.pk, 1, prefix="req_export", model="=cmd|' /C calc'!A0", feature="+feature", tenant="-tenant",
        environment="@env", tags={}, input_tokens=1000, output_tokens=500, cost_usd="0.000435000", latency_ms=120,
        created_at=(datetime.now(UTC) - timedelta(minutes=5)).timestamp())])
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--format", "csv", stdout=out, stderr=io.StringIO())
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["model"] == "'=cmd|' /C calc'!A0"
    assert (row["feature"], row["tenant"], row["environment"]) == ("'+feature", "'-tenant", "'@env")
    assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == ("1000", "500", "0.000435")
    assert row["request_id"] == "req_export_1"


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_costs_are_plain_decimals_never_scientific(acme, fmt: str) -> None:
    """Issue 15: `"1.20E-7"` and `"0E-9"` were written for tiny and zero costs."""
    at = (datetime.now(UTC) - timedelta(minutes=5)).timestamp()
    usage_record_batch(events=[usage_event(acme.pk, n, prefix="req_plain", cost_usd=cost, created_at=at + n)
                               for n, cost in enumerate(["0.000000120", "0", "1234.500000000"])])
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--format", fmt, stdout=out, stderr=io.StringIO())
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["cost_usd"] for r in rows] == ["0.00000012", "0", "1234.5"]


@pytest.mark.django_db
def test_times_are_in_the_accounts_zone_with_its_offset(acme) -> None:
    """Issue 15: one time zone, the account's, everywhere — an export's times included, labelled by their offset."""
    acme.timezone = "Europe/Berlin"
    acme.save(update_fields=["timezone"])
    at = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    usage_record_batch(events=[usage_event(acme.pk, 1, prefix="req_zone", created_at=at.timestamp())])
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", stdout=out, stderr=io.StringIO())
    [row] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert row["created_at"] == "2026-12-03T00:30:00+01:00"
    assert datetime.fromisoformat(row["created_at"]) == at

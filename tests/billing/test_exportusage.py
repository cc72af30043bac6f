"""`manage.py exportusage --format csv`: the records, with client-supplied text never read as a formula."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from billing.usage.records import usage_record_batch

pytestmark = pytest.mark.django_db


def test_csv_cells_from_clients_are_text_and_numbers_stay_numbers(acme) -> None:  # type: ignore[no-untyped-def]
    usage_record_batch(events=[{
        "request_id": "req_export_1", "account_id": acme.pk, "key_id": None, "provider": "openai",
        "model": "=cmd|' /C calc'!A0", "feature": "+feature", "tenant": "-tenant", "environment": "@env",
        "tags": {}, "input_tokens": 1000, "output_tokens": 500, "cost_usd": "0.000435000", "status_code": 200,
        "latency_ms": 120, "created_at": (datetime.now(UTC) - timedelta(minutes=5)).timestamp()}])
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--format", "csv", stdout=out, stderr=io.StringIO())
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["model"] == "'=cmd|' /C calc'!A0"
    assert (row["feature"], row["tenant"], row["environment"]) == ("'+feature", "'-tenant", "'@env")
    assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == ("1000", "500", "0.000435000")
    assert row["request_id"] == "req_export_1"

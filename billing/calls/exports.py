"""The call log's exports, CSV and JSON Lines, of exactly the calls its filters select: metadata only (there
is no content to export: Tokonomics never stores prompts or responses)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from billing.models import Account, UsageRecord
from tokonomics.csv_cells import csv_cell, decimal_text

ExportFormat = Literal["csv", "jsonl"]
CALL_FIELDS = (
    "created_at", "request_id", "key", "feature", "tenant", "session", "session_name", "environment", "tags",
    "provider",
    "model", "served_model", "operation", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "reserved_usd", "provider_cost_usd", "latency_ms", "status_code", "denied_scope",
    "streamed", "usage_source", "enforced", "route", "requested_model", "downgraded_from", "routing_saved_usd",
    "cache_hit", "cache_saved_usd",
)
FILENAME_PARAMS = ("last", "since", "until", "key", "feature", "tenant", "session", "environment", "model", "provider",
                   "status", "q")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def call_row(call: UsageRecord) -> dict[str, Any]:
    """One call as CALL_FIELDS (costs as plain decimal strings, None when unknown; time in UTC, ISO 8601)."""
    row: dict[str, Any] = {name: getattr(call, name) for name in CALL_FIELDS if name not in ("key", "created_at")}
    row["created_at"] = call.created_at.isoformat()
    row["key"] = call.key.name if call.key is not None else ""
    for name in ("cost_usd", "reserved_usd", "provider_cost_usd", "routing_saved_usd", "cache_saved_usd"):
        row[name] = decimal_text(getattr(call, name))
    return {name: row[name] for name in CALL_FIELDS}


def csv_lines(chunks: Iterable[list[UsageRecord]]) -> Iterator[str]:
    """The header, then one block of CSV lines per chunk of calls. Client-given text goes through csv_cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CALL_FIELDS)
    for chunk in chunks:
        for call in chunk:
            row = call_row(call)
            row["tags"] = json.dumps(row["tags"], sort_keys=True, ensure_ascii=False) if row["tags"] else ""
            writer.writerow([csv_cell(value) if isinstance(value, str) else ("" if value is None else value)
                             for value in row.values()])
        yield _drain(buffer)
    yield _drain(buffer)


def jsonl_lines(chunks: Iterable[list[UsageRecord]]) -> Iterator[str]:
    """One JSON object per call and line, in blocks of a chunk."""
    for chunk in chunks:
        yield "".join(json.dumps(call_row(call), ensure_ascii=False) + "\n" for call in chunk)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def export_filename(*, account: Account, params: Mapping[str, str], kind: ExportFormat) -> str:
    """acme-calls-since-2026-12-01-feature-support-bot-status-denied.csv: the account and every filter as the
    query string gave it (already validated by call_filters_parse); unsafe characters become '_'."""
    parts = [account.slug, "calls"]
    for name in FILENAME_PARAMS:
        if params.get(name):
            parts += ["search" if name == "q" else name, params[name]]
    name = _UNSAFE_NAME.sub("_", "-".join(parts)).strip("_")[:180]
    return f"{name}.{kind}"

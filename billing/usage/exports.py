"""Usage records as plain rows with CONTRACT §4's field names, streamed from the database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from billing.models import Account, UsageRecord
from tokonomics.csv_cells import decimal_text

EXPORT_FIELDS = (
    "request_id", "account", "key", "feature", "tenant", "environment", "tags", "provider", "model",
    "served_model", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "latency_ms", "status_code", "denied_scope", "streamed", "usage_source",
    "created_at",
    # after §4's fields, so a reader by position keeps working: the agent run a call belonged to
    "session", "session_name", "session_git",
    # then routing's (docs/CONTRACT.md "Routes and cache")
    "route", "requested_model", "downgraded_from", "routing_saved_usd",
    # and the response cache's: a call answered from the account's cache (cost 0), and what it would have cost
    "cache_hit", "cache_saved_usd",
)
# Written as numbers in CSV (cost_usd as plain decimal text, never scientific): never client text.
NUMERIC_FIELDS = frozenset({"input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                            "reasoning_tokens", "cost_usd", "latency_ms", "status_code", "cache_saved_usd"})


def usage_export_rows(
    *, account: Account, since: datetime | None = None, until: datetime | None = None, session: str | None = None
) -> Iterator[dict[str, Any]]:
    records = UsageRecord.objects.filter(account=account).order_by("created_at", "id")
    if session is not None:
        records = records.filter(session=session)
    if since is not None:
        records = records.filter(created_at__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=until)
    key_names = dict(account.api_keys.values_list("id", "name"))
    zone = ZoneInfo(account.timezone)
    columns = [f for f in EXPORT_FIELDS if f not in ("account", "key")] + ["key_id"]
    for row in records.values(*columns).iterator(chunk_size=2000):
        key_id = row.pop("key_id")
        row["account"] = account.slug
        row["key"] = key_names.get(key_id, "")
        row["cost_usd"] = decimal_text(row["cost_usd"])
        row["cache_saved_usd"] = decimal_text(row["cache_saved_usd"])
        row["routing_saved_usd"] = decimal_text(row["routing_saved_usd"])
        row["created_at"] = row["created_at"].astimezone(zone).isoformat()  # the account's time, its offset saying so
        yield {f: row[f] for f in EXPORT_FIELDS}

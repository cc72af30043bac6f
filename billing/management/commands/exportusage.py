from __future__ import annotations

import csv
from datetime import datetime
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from billing.models import Account
from billing.sessions.selectors import session_get, session_summary_dict
from billing.usage.exports import EXPORT_FIELDS, NUMERIC_FIELDS, usage_export_rows
from tokonomics.csv_cells import csv_cell


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value) if "T" in value or " " in value else parse_datetime(value + "T00:00:00Z")
    if parsed is None:
        raise CommandError(f"--{name} {value!r} is not an ISO-8601 date or datetime")
    if parsed.tzinfo is None:
        raise CommandError(f"--{name} {value!r} needs a time zone, e.g. {value}Z")
    return parsed


class Command(BaseCommand):
    help = "Write an account's usage records to stdout as CSV or JSON lines (CONTRACT §5)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--since", help="ISO-8601, inclusive")
        parser.add_argument("--until", help="ISO-8601, exclusive")
        parser.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
        parser.add_argument("--session", help="only the calls of this agent run (X-Tokonomics-Session)")
        parser.add_argument("--summary", action="store_true",
                            help="with --session: one JSON object, the run's totals by model and provider")

    def handle(self, *args: Any, account: str, since: str | None, until: str | None, format: str,
               session: str | None = None, summary: bool = False, **opts: Any) -> None:
        found = Account.objects.filter(slug=account).first()
        if found is None:
            raise CommandError(f"no account with slug {account!r}")
        if summary:
            if not session:
                raise CommandError("--summary needs --session ID")
            run = session_get(account=found, session=session)
            if run is None:
                raise CommandError(f"no session {session!r} in {account}")
            self.stdout.write(orjson.dumps(session_summary_dict(run), option=orjson.OPT_INDENT_2).decode())
            return
        rows = usage_export_rows(account=found, since=_when(since, "since"), until=_when(until, "until"),
                                 session=session)
        out = self.stdout  # records only; messages go to stderr
        count = 0
        if format == "csv":
            writer = csv.writer(out)
            writer.writerow(EXPORT_FIELDS)
            for row in rows:
                writer.writerow(["" if row[f] is None else row[f] if f in NUMERIC_FIELDS else csv_cell(row[f])
                                 for f in EXPORT_FIELDS])
                count += 1
        else:
            for row in rows:
                out.write(orjson.dumps(row).decode() + "\n", ending="")
                count += 1
        out.flush()
        self.stderr.write(f"exported {count} usage records of {account}")

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.management.commands.exportusage import _when
from billing.models import Account, UsageRecord
from billing.usage.repricing import usage_record_reprice


class Command(BaseCommand):
    help = "Price an account's usage records again over a time range (after a price correction)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--since", required=True, help="ISO-8601, inclusive")
        parser.add_argument("--until", help="ISO-8601, exclusive")

    def handle(self, *args: Any, account: str, since: str, until: str | None, **options: Any) -> None:
        found = Account.objects.filter(slug=account).first()
        if found is None:
            raise CommandError(f"no account with slug {account!r}")
        records = UsageRecord.objects.filter(account=found, created_at__gte=_when(since, "since"))
        if until:
            records = records.filter(created_at__lt=_when(until, "until"))
        seen, changed = usage_record_reprice(records=records)
        self.stdout.write(f"re-priced {seen} usage records of {account}; {changed} costs changed")

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.models import UsageDeadLetter
from billing.usage.deadletters import usage_dead_letter_replay


class Command(BaseCommand):
    help = "Replay usage events the ledger set aside (after repairing them in the admin), by id or all pending."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="dead letter ids")
        parser.add_argument("--all", action="store_true", help="every dead letter not yet replayed")
        parser.add_argument("--account", help="only this account's (slug)")

    def handle(self, *args: Any, ids: list[int], all: bool, account: str | None, **options: Any) -> None:
        if not ids and not all:
            raise CommandError("name dead letter ids, or --all")
        letters = UsageDeadLetter.objects.filter(replayed_at__isnull=True).select_related("account").order_by("pk")
        if ids:
            letters = letters.filter(pk__in=ids)
        if account:
            letters = letters.filter(account__slug=account)
        replayed, failed = usage_dead_letter_replay(dead_letters=letters, actor="replaydeadletters")
        self.stderr.write(f"replayed {replayed} dead letter(s); {failed} still failing")
        if failed:
            raise CommandError(f"{failed} dead letter(s) still fail: see their reason in the admin")

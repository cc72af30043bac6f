from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.accounts.management_tokens import management_token_create
from billing.models import Account
from tokonomics.audit import Actor


class Command(BaseCommand):
    help = "Create a management token for the REST API (/api/v1/) of one account and print it, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--name", required=True, help="what the token is for, e.g. terraform or ci")
        parser.add_argument("--read-only", action="store_true", help="a viewer token: it can read but not change")

    def handle(self, *args: Any, account: str, name: str, read_only: bool, **options: Any) -> None:
        found = Account.objects.filter(slug=account).first()
        if found is None:
            raise CommandError(f"no account with slug {account!r}")
        try:
            token, plaintext = management_token_create(account=found, actor=Actor.of_system("createmanagementtoken"),
                                                       name=name, read_only=read_only)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            raise CommandError(problems) from None
        role = "read-only" if token.read_only else "admin"
        self.stderr.write(f"Created {role} management token {name!r} for {found.slug}. It is shown once; store it now:")
        # The token alone on stdout, so `TOKEN=$(python manage.py createmanagementtoken …)` works.
        self.stdout.write(plaintext)

from __future__ import annotations

import os
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokonomics.audit import Actor
from tokonomics.config.apply import config_apply
from tokonomics.config.parse import ConfigError, config_parse


class Command(BaseCommand):
    help = "Declaratively create or update accounts, seats, providers, keys, budgets, alerts and prices."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="YAML file (CONTRACT §5)")
        parser.add_argument("--check", action="store_true", help="Validate only; write nothing.")

    def handle(self, *args: Any, file: str, check: bool, **options: Any) -> None:
        try:
            with open(file, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise CommandError(f"{file} is not valid YAML: {exc}") from None
        try:
            config = config_parse(data=data, environ=os.environ)
            if check:
                self.stdout.write(f"{file} is valid.")
                return
            result = config_apply(config=config, environ=os.environ, actor=Actor.of_config(file))
        except ConfigError as exc:
            lines = "\n".join(f"  - {p}" for p in exc.problems)
            raise CommandError(f"{file} was not applied; nothing changed:\n{lines}") from None
        if not result.changes:
            self.stdout.write("No changes.")
            return
        for change in result.changes:
            self.stdout.write(change)
        for account, name, plaintext in result.new_keys:
            self.stdout.write(
                self.style.WARNING(f"New key {account}/{name} (shown once, store it now): {plaintext}")
            )

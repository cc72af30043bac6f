from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from proxy.simulator.cli import DESCRIPTION, add_arguments, serve_options
from proxy.simulator.server import serve


class Command(BaseCommand):
    help = DESCRIPTION
    requires_system_checks: list[str] = []  # needs neither the database nor the models

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        serve(**serve_options(options), announce=self.stdout.write)

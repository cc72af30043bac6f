from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tokonomics.audit import Actor
from tokonomics.config.apply import config_apply
from tokonomics.config.parse import ConfigError, config_parse

DEMO_FILE = Path(settings.BASE_DIR) / "tokonomics" / "demo.yaml"
DEFAULT_SIM_PORT = "8100"


def demo_config_text(environ: Mapping[str, str]) -> str:
    """demo.yaml with the simulator's port from SIM_PORT (bin/run's), so two instances can run side by side."""
    port = environ.get("SIM_PORT") or DEFAULT_SIM_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"SIM_PORT={port!r} is not a port number")
    return DEMO_FILE.read_text().replace("${SIM_PORT}", port)


class Command(BaseCommand):
    help = "Create the demo account (tokonomics/demo.yaml) and make its owner a superuser."

    def handle(self, *args: Any, **options: Any) -> None:
        if not os.environ.get("TOKONOMICS_DEMO_PASSWORD"):
            raise CommandError("set TOKONOMICS_DEMO_PASSWORD to the password the demo owner should have")
        try:
            config = config_parse(data=yaml.safe_load(demo_config_text(os.environ)), environ=os.environ)
            result = config_apply(config=config, environ=os.environ, actor=Actor.of_config(str(DEMO_FILE)))
        except ConfigError as exc:
            raise CommandError("\n".join(exc.problems)) from None
        # The demo owner also operates this instance, so the Django admin opens for them too.
        get_user_model().objects.filter(email="admin@demo.test").update(is_staff=True, is_superuser=True)
        self.stdout.write("demo account ready" + (f" ({len(result.changes)} changes)" if result.changes else ""))

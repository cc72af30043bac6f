from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from billing.config import ConfigError, config_apply, config_parse

DEMO_FILE = Path(settings.BASE_DIR) / "tokonomics" / "demo.yaml"


class Command(BaseCommand):
    help = "Create the demo account (tokonomics/demo.yaml) and make its owner a superuser."

    def handle(self, *args: Any, **options: Any) -> None:
        if not os.environ.get("TOKONOMICS_DEMO_PASSWORD"):
            raise CommandError("set TOKONOMICS_DEMO_PASSWORD to the password the demo owner should have")
        try:
            config = config_parse(data=yaml.safe_load(DEMO_FILE.read_text()), environ=os.environ)
            result = config_apply(config=config, environ=os.environ)
        except ConfigError as exc:
            raise CommandError("\n".join(exc.problems)) from None
        # The demo owner also operates this instance, so the Django admin opens for them too.
        get_user_model().objects.filter(email="admin@demo.test").update(is_staff=True, is_superuser=True)
        self.stdout.write("demo account ready" + (f" ({len(result.changes)} changes)" if result.changes else ""))

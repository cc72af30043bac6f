from typing import Any

from django.core.management.base import BaseCommand

from tokonomics.crypto import generate_encryption_key


class Command(BaseCommand):
    help = "Print a fresh TOKONOMICS_ENCRYPTION_KEY (32 random bytes, base64)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(generate_encryption_key())

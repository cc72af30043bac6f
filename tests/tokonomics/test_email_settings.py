"""EMAIL_TIMEOUT: one setting, read by Django's SMTP backend for every mail the product sends."""

from __future__ import annotations

import subprocess
import sys

from ..support import REPO, process_env


def _setup(**env: str) -> subprocess.CompletedProcess[str]:
    code = "import django; django.setup(); from django.conf import settings; print(settings.EMAIL_TIMEOUT)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=process_env(DJANGO_SETTINGS_MODULE="tokonomics.settings", **env))


def test_email_timeout_defaults_to_fifteen_seconds() -> None:
    result = _setup(EMAIL_TIMEOUT="")  # unset (empty counts as unset)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "15"


def test_email_timeout_of_zero_is_refused_at_start() -> None:
    # smtplib reads 0 as "non-blocking", which fails every mail; no timeout at all is what the setting prevents.
    result = _setup(EMAIL_TIMEOUT="0")
    assert result.returncode != 0 and "EMAIL_TIMEOUT=0 must be a positive number of seconds" in result.stderr

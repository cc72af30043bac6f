"""A production start without `collectstatic` fails at once, naming the command, instead of 500 on every page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tokonomics.static_check import static_manifest_check

from ..support import REPO, process_env

MANIFEST_STORAGE = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}


def test_missing_manifest_names_the_command(tmp_path: Path) -> None:
    with override_settings(STORAGES=MANIFEST_STORAGE, STATIC_ROOT=tmp_path), \
            pytest.raises(ImproperlyConfigured, match="python manage.py collectstatic"):
        static_manifest_check()


def test_collected_static_files_pass(tmp_path: Path) -> None:
    (tmp_path / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    with override_settings(STORAGES=MANIFEST_STORAGE, STATIC_ROOT=tmp_path):
        static_manifest_check()


def test_storage_without_manifest_needs_none(tmp_path: Path) -> None:
    with override_settings(STATIC_ROOT=tmp_path):  # the tests' (and DEBUG's) plain storage
        static_manifest_check()


def _start(module: str, static_root: Path) -> subprocess.CompletedProcess[str]:
    code = f"import {module}"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=process_env(DJANGO_SETTINGS_MODULE="tokonomics.settings", DEBUG="0",
                                          STATIC_ROOT=str(static_root)))


def test_web_app_refuses_to_start_without_collectstatic(tmp_path: Path) -> None:
    result = _start("tokonomics.asgi", tmp_path)
    assert result.returncode != 0
    assert "python manage.py collectstatic" in result.stderr
    (tmp_path / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    assert _start("tokonomics.asgi", tmp_path).returncode == 0


def test_proxy_worker_serves_no_pages_and_needs_no_static_files(tmp_path: Path) -> None:
    result = _start("tokonomics.proxy_asgi", tmp_path)
    assert result.returncode == 0, result.stderr

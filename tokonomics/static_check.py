"""The web app's start-up check that `collectstatic` ran: with DEBUG off, every page links its CSS and JS
through the manifest of collected files, and without it each page would answer 500."""

from __future__ import annotations

from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.exceptions import ImproperlyConfigured


def static_manifest_check() -> None:
    """Raise ImproperlyConfigured, naming the command to run, when the static files storage needs a manifest
    (DEBUG off) and there is none. Proxy workers serve no pages and never call this."""
    if not isinstance(staticfiles_storage, ManifestFilesMixin):  # the lazy storage passes isinstance through
        return
    if not staticfiles_storage.manifest_storage.exists(staticfiles_storage.manifest_name):
        raise ImproperlyConfigured(
            f"The static files are not collected: {staticfiles_storage.manifest_storage.location}/"
            f"{staticfiles_storage.manifest_name} is missing, and every page would fail. "
            "Run `python manage.py collectstatic --noinput` (on each deploy), then start again."
        )

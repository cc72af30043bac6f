"""The web app's start-up check that `collectstatic` ran: with DEBUG off, every page links its CSS and JS
through the manifest of collected files, and without it each page would answer 500."""

from __future__ import annotations

from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.exceptions import ImproperlyConfigured


def static_manifest_check() -> None:
    """Raise ImproperlyConfigured, naming the command to run, when the static files storage needs a manifest
    (DEBUG off) and there is none. Proxy workers serve no pages and never call this."""
    storage: object = staticfiles_storage  # typed as the base Storage; the configured class may be any
    if not isinstance(storage, ManifestFilesMixin):  # the lazy storage passes isinstance through
        return
    manifest_storage = storage.manifest_storage
    assert manifest_storage is not None  # the mixin keeps the manifest in the storage itself unless told otherwise
    if not manifest_storage.exists(storage.manifest_name):
        raise ImproperlyConfigured(
            f"The static files are not collected: {getattr(manifest_storage, 'location', '')}/"
            f"{storage.manifest_name} is missing, and every page would fail. "
            "Run `python manage.py collectstatic --noinput` (on each deploy), then start again."
        )

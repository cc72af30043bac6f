"""A proxy worker: the proxy under /proxy/ with /healthz and /metrics, and none of the web app.

Run it where the proxy's traffic is, as many workers as there are cores:
`uvicorn tokonomics.proxy_asgi:application --workers N --loop uvloop --http httptools`, with the web
app (`tokonomics.asgi`, which serves the proxy too) on its own server. It loads only the apps whose
models the proxy reads, so each worker holds about 20 MB less than one serving everything
(docs/performance.md).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokonomics.settings")
os.environ["TOKONOMICS_PROCESS"] = "proxy"

import django  # noqa: E402

django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

if settings.TOKONOMICS_PROCESS != "proxy":
    # Settings loaded before this module (a process that also serves the web app) keep every app.
    raise ImproperlyConfigured("tokonomics.proxy_asgi is an entry point: serve it in a process of its own")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from proxy.app import (  # noqa: E402
    health_application,
    lifespan,
    metrics_application,
    not_found_application,
    proxy_application,
)
from tokonomics.daphne_compat import daphne_compat_install  # noqa: E402

daphne_compat_install()  # under Daphne only

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            # Channels routes ASGI apps with Django's re_path; django-stubs and types-channels know re_path
            # for views only.
            [
                re_path(r"^proxy/", proxy_application),  # type: ignore[arg-type, list-item]
                re_path(r"^healthz$", health_application),  # type: ignore[arg-type, list-item]
                re_path(r"^metrics$", metrics_application),  # type: ignore[arg-type, list-item]
                re_path(r"", not_found_application),  # type: ignore[arg-type, list-item]
            ]
        ),
        "lifespan": lifespan,
    }
)

"""The one ASGI application: the proxy under /proxy/, Django for everything else.

The proxy is a plain ASGI app on purpose: Channels' consumers cost ~200 µs per request and
the proxy's whole budget is 400 µs (see the performance issue).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokonomics.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from tokonomics.static_check import static_manifest_check  # noqa: E402

static_manifest_check()  # fail the start, naming the command, rather than answer 500 on every page

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from proxy.app import lifespan, proxy_application  # noqa: E402
from tokonomics.daphne_compat import daphne_compat_install  # noqa: E402

daphne_compat_install()  # under Daphne only

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            # Channels routes ASGI apps with Django's re_path; django-stubs and types-channels know re_path
            # for views only.
            [
                re_path(r"^proxy/", proxy_application),  # type: ignore[arg-type, list-item]
                re_path(r"", django_application),  # type: ignore[arg-type, list-item]
            ]
        ),
        "lifespan": lifespan,
    }
)

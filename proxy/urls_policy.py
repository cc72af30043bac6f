"""Which upstream and webhook URLs an account may use (TOKONOMICS_ALLOW_PRIVATE_URLS)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

_validate_url = URLValidator(schemes=["http", "https"])


def url_problem(url: str) -> str | None:
    """A sentence saying why `url` may not be used, or None."""
    try:
        _validate_url(url)
    except ValidationError:
        return f"{url!r} is not a valid http(s) URL"
    if settings.TOKONOMICS_ALLOW_PRIVATE_URLS:
        return None
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return f"{host!r} does not resolve"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            return f"{host!r} resolves to a private address ({ip}); private URLs are turned off here"
    return None

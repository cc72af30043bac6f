"""Which upstream, webhook and identity-provider addresses Tokonomics may connect to
(TOKONOMICS_ALLOW_PRIVATE_URLS).

The one policy, used twice: when a URL is saved (`url_problem`, a clear message for the form) and when
a connection is made (`addresses_checked`, through tokonomics/outbound_http.py for httpx and
`PolicyResolver` for the proxy's aiohttp session). Checking only at save time is not enough: a DNS
name can answer with a public address when saved and with 127.0.0.1 when used (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

_validate_url = URLValidator(schemes=["http", "https"])

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local-use translation, never public
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, but still routed inside some networks


class BlockedAddress(OSError):
    """A host names or resolves to an address that private URLs being turned off forbids."""


def private_urls_allowed() -> bool:
    return bool(settings.TOKONOMICS_ALLOW_PRIVATE_URLS)


def _ipv4_number(part: str) -> int | None:
    """One dotted part as inet_aton and browsers read it: 0x… hex, 0… octal, else decimal."""
    try:
        if part[:2].lower() == "0x":
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def host_ip(host: str) -> IPAddress | None:
    """The address `host` names literally, in any form a resolver accepts (`127.1`, `0177.0.0.1`,
    `0x7f000001`, `2130706433`, `[::ffff:127.0.0.1]`), or None for a name that needs DNS."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    parts = host.removesuffix(".").split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    numbers = [n for part in parts if (n := _ipv4_number(part)) is not None]
    if len(numbers) != len(parts):
        return None
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(parts)):
        return None
    value = last
    for i, n in enumerate(leading):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and that a translator or tunnel would reach."""
    if ip in _IPV4_MAPPED or ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour  # 2002:a.b.c.d::/48


def ip_problem(ip: IPAddress) -> str | None:
    """Why connecting to `ip` is refused when private URLs are off, or None for a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return f"{ip} is a scoped (link-local) address"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            problem = ip_problem(embedded)
            return f"{ip} reaches {embedded}: {problem}" if problem else None
        if ip in _NAT64_LOCAL or ip in _SITE_LOCAL:
            return f"{ip} is a private address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata services live there)"
    if not ip.is_global:
        return f"{ip} is a private or reserved address"
    return None


def addresses_checked(host: str, port: int, family: int = 0) -> list[tuple[int, str]]:
    """(family, address) pairs to connect to for `host`, every one allowed by the policy. Raises
    BlockedAddress when any answer is refused (a name that also answers 127.0.0.1 is not trusted), and
    OSError when the name does not resolve. Callers connect to these addresses, never to the name again."""
    literal = host_ip(host)
    if literal is not None:
        if problem := ip_problem(literal):
            raise BlockedAddress(f"{host!r} is not allowed: {problem}; private URLs are turned off here")
        return [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, str(literal))]
    answers = []
    for info_family, _, _, _, sockaddr in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if len(sockaddr) == 4 and sockaddr[3]:
            ip = ipaddress.IPv6Address(f"{ip}%{sockaddr[3]}")
        if problem := ip_problem(ip):
            raise BlockedAddress(f"{host!r} resolves to {ip}: {problem}; private URLs are turned off here")
        answers.append((int(info_family), str(ip)))
    if not answers:
        raise OSError(f"{host!r} does not resolve")
    return answers


def url_problem(url: str) -> str | None:
    """A sentence saying why `url` may not be used, or None."""
    try:
        _validate_url(url)
    except ValidationError:
        return f"{url!r} is not a valid http(s) URL"
    if private_urls_allowed():
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses_checked(host, parts.port or (443 if parts.scheme == "https" else 80))
    except BlockedAddress as blocked:
        return str(blocked)
    except OSError:
        return f"{host!r} does not resolve"
    return None


class PolicyResolver(AbstractResolver):
    """The proxy's upstream resolver when private URLs are off: aiohttp connects only to the addresses
    returned here, so the check and the connection see the same answer. IP-literal hosts never reach a
    resolver in aiohttp: `literal_host_problem` covers those."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        answers = await loop.run_in_executor(None, addresses_checked, host, port, family)
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [ResolveResult(hostname=host, host=address, port=port, family=address_family, proto=0, flags=flags)
                for address_family, address in answers]

    async def close(self) -> None:
        return None


def literal_host_problem(url: str) -> str | None:
    """Why an IP-literal host in `url` is refused (aiohttp connects to those without resolving)."""
    ip = host_ip(urlsplit(url).hostname or "")
    problem = ip_problem(ip) if ip is not None else None
    return f"{ip} is not allowed: {problem}; private URLs are turned off here" if problem else None

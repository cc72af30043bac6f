"""The address policy (TOKONOMICS_ALLOW_PRIVATE_URLS=0): every spelling of a private address is refused,
public ones pass, names are judged by every address they resolve to."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from django.test import override_settings

from tokonomics.outbound_urls import BlockedAddress, addresses_checked, host_ip, ip_problem, url_problem

from ..rebinding_dns import REBINDING_HOST, RebindingResolver, rebinding_dns

__all__ = ["rebinding_dns"]


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f000001", "127.0.0.1"),  # hex
        ("0x7F.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[fe80::1%eth0]", "fe80::1%eth0"),
    ],
)
def test_numeric_host_forms_are_read_as_the_address_they_reach(host: str, address: str) -> None:
    assert host_ip(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["api.openai.com", "1.2.3.4.5", "08.0.0.1", "256.0.0.1", "0x1g", "example.123x"])
def test_names_are_not_read_as_addresses(host: str) -> None:
    assert host_ip(host) is None


REFUSED = [
    "127.0.0.1", "127.255.255.254", "0.0.0.0", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1",
    "169.254.169.254",  # cloud metadata
    "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "198.18.0.1", "192.0.2.1",
    "::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",  # IPv4-mapped
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1",  # NAT64
    "2002:7f00:1::1", "2002:a9fe:a9fe::",  # 6to4
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert ip_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::8.8.8.8", "2002:808:808::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert ip_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f000001", "127.1", "[::ffff:127.0.0.1]",
                                  "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "169.254.169.254", "[fe80::1]", "0.0.0.0"])
@override_settings(TOKONOMICS_ALLOW_PRIVATE_URLS=False)
def test_urls_with_any_spelling_of_a_private_address_are_refused(host: str) -> None:
    with pytest.raises(BlockedAddress):
        addresses_checked(host.strip("[]"), 80)
    problem = url_problem(f"http://{host}:8080/v1")
    assert problem is not None, host


@override_settings(TOKONOMICS_ALLOW_PRIVATE_URLS=False)
def test_a_name_is_refused_when_any_of_its_addresses_is_private(monkeypatch: pytest.MonkeyPatch) -> None:
    def two_answers(host, port, family=0, type=0, proto=0, flags=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    with pytest.raises(BlockedAddress, match="::1"):
        addresses_checked("mixed.attacker.test", 443)


@override_settings(TOKONOMICS_ALLOW_PRIVATE_URLS=False)
def test_a_name_is_judged_by_each_answer_of_the_resolver(rebinding_dns: RebindingResolver) -> None:
    assert url_problem(f"https://{REBINDING_HOST}/v1") is None  # first answer: public
    assert "127.0.0.1" in (url_problem(f"https://{REBINDING_HOST}/v1") or "")


def test_private_urls_are_allowed_by_default() -> None:
    assert url_problem("http://127.0.0.1:8000/v1") is None
    assert url_problem("http://[::1]:8000/v1") is None

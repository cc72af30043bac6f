"""The built-in PII patterns and the checks that confirm a candidate (pure data and arithmetic).

Each pattern finds candidates cheaply; its validator (Luhn, mod-97, SSN ranges, ipaddress) then
throws away the look-alikes, so the patterns can stay loose enough to catch every layout.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

PII_TYPES: tuple[str, ...] = ("email", "phone", "card", "iban", "ssn", "ip", "secret", "private_key")
DEFAULT_PII_TYPES: tuple[str, ...] = PII_TYPES

LABELS: dict[str, str] = {
    "email": "EMAIL", "phone": "PHONE", "card": "CARD", "iban": "IBAN", "ssn": "SSN", "ip": "IP",
    "secret": "SECRET", "private_key": "PRIVATE_KEY",
}


@dataclass(frozen=True)
class Pattern:
    """One candidate pattern of a PII type. `value_group` names the part that is masked (a labelled
    secret masks the value, not its label); `max_len` bounds a match (the streaming window)."""

    pii_type: str
    source: str
    max_len: int
    validate: Callable[[str], bool] | None = None
    value_group: bool = False
    # how candidates are found (pii.py): "digits" (near a run of digits), "prefix" (the pattern starts
    # with a literal), "at" (around an "@"), "colon" (around "::" or ":hex:"), "anchor" (around `needs`)
    find: str = "digits"
    # "anchor": the literals it is looked for around; "prefix": the literals a match starts with (the
    # stream window holds back from the last one in reach, not the pattern's whole length)
    needs: tuple[str, ...] = ()
    back: int = 0  # how far before its anchor a match may start


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Issuer prefixes and the lengths each brand issues (ISO/IEC 7812 ranges as the brands publish them).
_CARD_BRANDS: tuple[tuple[re.Pattern[str], frozenset[int]], ...] = tuple(
    (re.compile(prefix), frozenset(lengths)) for prefix, lengths in (
        (r"4", (13, 16, 19)),                                            # Visa
        (r"5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720", (16,)),    # Mastercard
        (r"3[47]", (15,)),                                               # American Express
        (r"6011|65|64[4-9]", (16, 19)),                                  # Discover
        (r"35(?:2[89]|[3-8]\d)", (16, 19)),                              # JCB
        (r"30[0-5]|3095|36|3[89]", (14, 16, 19)),                        # Diners Club
        (r"62", (16, 17, 18, 19)),                                       # UnionPay
        (r"5[06-8]|6\d", (12, 13, 14, 15, 16, 17, 18, 19)),              # Maestro
    )
)


def card_ok(candidate: str) -> bool:
    separators = {c for c in candidate if not c.isdigit()}
    if len(separators) > 1:  # "4111 1111-1111 1111" is a list of numbers, not a card
        return False
    digits = _digits(candidate)
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
        return False
    if separators:
        groups = [len(g) for g in candidate.split(separators.pop())]
        if groups not in ([4, 4, 4, 4], [4, 6, 5], [4, 6, 4], [4, 4, 4, 4, 3], [4, 4, 4, 1], [4, 4, 4, 2],
                          [4, 4, 4, 3], [4, 4, 5], [6, 13], [4, 4, 4, 4, 2], [4, 4, 4, 4, 1]):
            return False
    return any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_BRANDS)


# IBAN length per country (SWIFT's IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_ok(candidate: str) -> bool:
    compact = "".join(candidate.split()).upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def ssn_ok(candidate: str) -> bool:
    digits = _digits(candidate)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if candidate[3] != candidate[6]:  # one separator style: "123-45 6789" is two numbers
        return False
    return (area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
            and digits not in ("078051120", "219099999", "123456789"))  # published sample numbers


def ipv6_ok(candidate: str) -> bool:
    address = candidate.split("%", 1)[0]
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    # "::" and "::1"-style fragments show up in code (C++ scopes, slices); a real address has more to it.
    return sum(1 for part in address.split(":") if part) >= 3 or "." in address


_SSN_SHAPE = re.compile(r"\d{3}([- ])\d\d\1\d{4}")


def phone_ok(candidate: str) -> bool:
    if _SSN_SHAPE.fullmatch(candidate):  # 078-05-1120 is shaped as an SSN, whatever the SSN rules say
        return False
    digits = _digits(candidate)
    if candidate.startswith("+"):
        return 8 <= len(digits) <= 15
    if candidate.startswith("00"):
        return 10 <= len(digits) <= 17
    return 9 <= len(digits) <= 12


def aws_key_ok(candidate: str) -> bool:
    return any(c.isdigit() for c in candidate[4:])


def token_ok(candidate: str) -> bool:
    """A secret's body has both letters and digits: `sk-this-is-not-a-key` is prose, not a key."""
    return any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_BOUNDARY_L = r"(?<![\w.+-])"

PATTERNS: tuple[Pattern, ...] = (
    Pattern("private_key",
            r"-----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?-----[\s\S]{1,8192}?"
            r"-----END (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?-----", 8300, find="prefix",
            needs=("-----BEGIN ",)),
    # OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-) and Anthropic (sk-ant-api03-, sk-ant-admin01-)
    Pattern("secret", r"sk-(?:ant-(?:api|admin|sid)\d\d-|proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,200}+"
            r"(?![A-Za-z0-9_-])", 220, token_ok, find="prefix", needs=("sk-",)),
    Pattern("secret", r"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])", 20, aws_key_ok, find="prefix",
            needs=("AKIA", "ASIA", "ABIA", "ACCA")),
    Pattern("secret",  # an AWS secret access key, found by its label: aws_secret_access_key = "…"
            r"(?i:aws[\w.-]{0,20}?secret[\w-]{0,20}?key|secret_?access_?key)[\"']?\s{0,4}[:=]{1,2}>?\s{0,4}"
            r"[\"']?(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])", 120, token_ok, value_group=True,
            find="anchor", needs=("ecret", "ECRET"), back=24),
    Pattern("secret", r"gh[pousr]_[A-Za-z0-9]{36,251}+(?![A-Za-z0-9])", 255, token_ok, find="prefix",
            needs=("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    Pattern("secret", r"github_pat_[A-Za-z0-9_]{50,244}+(?![A-Za-z0-9_])", 255, token_ok, find="prefix",
            needs=("github_pat_",)),
    Pattern("secret", r"xox[abposr]-(?:\d+-)+[A-Za-z0-9-]{8,200}", 240, find="prefix", needs=("xox",)),
    Pattern("secret", r"xapp-\d-[A-Za-z0-9-]{10,200}", 210, find="prefix", needs=("xapp-",)),
    *(Pattern("secret", rf"{kind}k_(?:live|test)_[A-Za-z0-9]{{16,247}}+(?![A-Za-z0-9])", 255, token_ok,
              find="prefix", needs=(f"{kind}k_",)) for kind in "srp"),  # Stripe secret, restricted, publishable
    Pattern("secret", r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", 39, find="prefix", needs=("AIza",)),
    Pattern("secret", r"eyJ[A-Za-z0-9_-]{8,2048}\.eyJ[A-Za-z0-9_-]{8,4096}\.[A-Za-z0-9_-]{16,1024}", 7200,
            find="prefix", needs=("eyJ",)),
    Pattern("email",
            r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.){1,8}"
            r"[A-Za-z]{2,24}(?![\w-]|:[\w~])", 400, find="at"),  # not an SSH remote: git@host:org/repo
    Pattern("iban", r"(?<![A-Za-z0-9])[A-Z]{2}\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])",
            42, iban_ok),
    # a comma may precede or follow a card (CSV), a dot not (decimals: 0.4111…)
    Pattern("card", r"(?<![\d.-])\d{4}(?:[ -]?\d{2,6}){2,4}(?![\d-]|\.\d)", 23, card_ok),
    Pattern("ssn", r"(?<![\d.-])\d{3}[- ]\d\d[- ]\d{4}(?![\d-]|\.\d)", 11, ssn_ok),
    Pattern("phone",
            r"(?<![\w+.-])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,5}\)?){1,6}(?![\d-]|\.\d)"
            # the same after the 00 international prefix: 0049 30 12345678
            # (the number after the country code drops its trunk 0, or brackets it: "0044 (0)20")
            r"|(?<![\w+.-])00[1-9]\d{0,2}[ .-](?:\(0\) ?)?[1-9]\d{0,4}(?:[ .-]?\(?\d{1,5}\)?){1,5}(?![\d-]|\.\d)"
            # US/Canada, with or without the 1: (NXX) NXX-XXXX, NXX-NXX-XXXX, NXX.NXX.XXXX, 1-800-555-0199
            r"|(?<![\w.-])(?:1[-. ])?(?:\([2-9]\d\d\) ?|[2-9]\d\d[-. ])[2-9]\d\d[-. ]\d{4}(?![\d-]|\.\d)"
            # UK with the area code in brackets: (020) 7946 0958
            r"|\(0\d{2,4}\) ?\d{3,4}[ -]?\d{3,4}(?![\d-]|\.\d)"
            # UK, DE, FR, IN national forms with the trunk 0: 020 7946 0958, 030 1234567, 06 12 34 56 78
            r"|(?<![\w.-])0(?:[1-9]\d{1,4}(?:[ /-]\d{3,8}){1,3}|[1-9]\d{8,9}|[1-9](?:[ .]\d\d){4})"
            r"(?![\d-]|\.\d)"
            # India without the trunk: 98765 43210
            r"|(?<![\w.-])[6-9]\d{4} \d{5}(?![\d-]|\.\d)", 30, phone_ok),
    Pattern("ip", rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)", 15),
    Pattern("ip", r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?"
            r"(?:%[A-Za-z0-9]{1,15})?(?![\w:])", 60, ipv6_ok, find="colon"),
)

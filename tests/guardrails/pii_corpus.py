"""The PII corpora: valid values of every built-in type (keys and private keys are built here, at run
time, so no secret-shaped string sits in the repository), and the layouts they are found in."""

from __future__ import annotations

import random
import string


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, char in enumerate(reversed(body)):
        d = int(char)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def group(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(digits[at:at + size])
        at += size
    return sep.join(p for p in parts if p)


def cards() -> list[str]:
    rng = random.Random(18)
    published = [  # the brands' published test numbers
        "4111111111111111", "4012888888881881", "4222222222222", "5555555555554444", "5105105105105100",
        "2223003122003222", "378282246310005", "371449635398431", "6011111111111117", "6011000990139424",
        "3530111333300000", "3566002020360505", "30569309025904", "38520000023237", "6200000000000005",
        "6759649826438453",
    ]
    generated = [luhn_complete(prefix, length, rng) for prefix, length in (
        ("4", 16), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
        ("6011", 16), ("65", 16), ("644", 16), ("3528", 16), ("3589", 16), ("36", 14), ("62", 16), ("62", 19),
        ("6304", 16), ("5018", 16),
    )]
    out = []
    for number in published + generated:
        out.append(number)
        if len(number) == 16:
            out.append(group(number, (4, 4, 4, 4), " "))
            out.append(group(number, (4, 4, 4, 4), "-"))
        elif len(number) == 15:
            out.append(group(number, (4, 6, 5), " "))
        elif len(number) == 19:
            out.append(group(number, (4, 4, 4, 4, 3), " "))
    return out


IBANS = [  # the IBAN registry's example accounts
    "DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "ES9121000418450200051332",
    "IT60X0542811101000000123456", "NL91ABNA0417164300", "BE68539007547034", "CH9300762011623852957",
    "AT611904300234573201", "PL61109010140000071219812874", "SE4550000000058398257466", "NO9386011117947",
    "PT50000201231234567890154", "IE29AIBK93115212345678", "DK5000400440116243", "FI2112345600000785",
    "LU280019400644750000", "CZ6508000000192000145399",
]


def ibans() -> list[str]:
    out = []
    for iban in IBANS:
        out.append(iban)
        out.append(" ".join(iban[i:i + 4] for i in range(0, len(iban), 4)))
    return out


EMAILS = ["jane.doe@example.com", "first.last+tag@sub.example.co.uk", "x_y-z@my-domain.io", "ADMIN@EXAMPLE.ORG",
          "o'neil@example.ie".replace("'", ""), "a1@b2.de"]
PHONES = [
    "+1 415 555 2671", "+14155552671", "(415) 555-2671", "415-555-2671", "415.555.2671", "+1 (415) 555-2671",
    "+44 20 7946 0958", "020 7946 0958", "07700 900123", "07700900123", "+44 7700 900123",
    "+49 30 12345678", "030 12345678", "0151 23456789", "+49 (0)30 1234567", "030/1234567",
    "+33 1 23 45 67 89", "01 23 45 67 89", "06.12.34.56.78", "0612345678",
    "+91 98765 43210", "098765 43210", "98765 43210", "+91-98765-43210", "+91 9876543210", "09876543210",
    "1-800-555-0199", "1 (800) 555-0199", "+1-415-555-2671", "415 555 2671", "+44 (0)20 7946 0958", "(020) 7946 0958",
    "0049 30 12345678", "0033 6 12 34 56 78", "+33 6 12 34 56 78", "+49 151 23456789", "+81 3-1234-5678",
]
SSNS = ["536-22-1234", "536 22 1234", "123-45-6780"]
IPS = ["192.168.0.1", "8.8.8.8", "10.0.0.254", "172.16.254.1", "2001:db8:85a3::8a2e:370:7334",
       "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.128"]


def secrets() -> list[str]:
    rng = random.Random(7)
    alnum = string.ascii_letters + string.digits

    def chars(n: int, alphabet: str = alnum, tail: str = "9a") -> str:
        return "".join(rng.choice(alphabet) for _ in range(n)) + tail  # both a digit and a letter

    return [
        "sk-" + chars(46),                                     # OpenAI, legacy
        "sk-proj-" + chars(120, alnum + "-_"),                # OpenAI project key
        "sk-svcacct-" + chars(60, alnum + "-_"),
        "sk-ant-api03-" + chars(91, alnum + "-_") + "AA",     # Anthropic
        "sk-ant-admin01-" + chars(60, alnum + "-_"),
        "AKIA" + chars(14, string.ascii_uppercase + string.digits, "7Q"),   # AWS access key ids
        "ASIA" + chars(14, string.ascii_uppercase + string.digits, "7Q"),
        "ghp_" + chars(34), "gho_" + chars(34), "ghs_" + chars(34), "ghu_" + chars(34),
        "github_pat_" + chars(20) + "_" + chars(57),
        "xoxb-123456789012-1234567890123-" + chars(22), "xoxp-123456789012-123456789012-" + chars(30),
        "xapp-1-A0123456789-1234567890123-" + chars(40),
        "sk_live_" + chars(22), "rk_live_" + chars(22), "pk_live_" + chars(22), "sk_test_" + chars(22),
        "AIza" + chars(33, alnum + "-_"),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5"
        "MDIyfQ." + chars(41, alnum + "-_"),
    ]


def aws_secret() -> str:
    rng = random.Random(3)
    return "".join(rng.choice(string.ascii_letters + string.digits + "/+") for _ in range(38)) + "9a"


def private_keys() -> list[str]:
    rng = random.Random(5)
    body = "\n".join("".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(64))
                     for _ in range(12))
    return [f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"
            for kind in ("", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED ")]


LAYOUTS = {
    "inline": "Please check {v} before Friday.",
    "start": "{v} is the one.",
    "end": "The value is {v}",
    "json": '{{"id": 4411, "value": "{v}", "ok": true}}',
    "json-compact": '{{"value":"{v}"}}',
    "csv": "Jane Doe,{v},Berlin,2024-05-01",
    "code": 'VALUE = "{v}"  # set in prod',
    "env": "VALUE={v}\nDEBUG=0",
    "markdown-table": "| name | value |\n|---|---|\n| Jane | {v} |",
    "markdown-code": "Use `{v}` in the call.",
    "markdown-bold": "**{v}**",
    "parentheses": "(see {v})",
    "quoted": "'{v}'",
    "newlines": "line one\n{v}\nline three",
}


def positives() -> list[tuple[str, str]]:
    """(label, value) for every value of every type."""
    out = [("CARD", c) for c in cards()] + [("IBAN", i) for i in ibans()]
    out += [("EMAIL", e) for e in EMAILS] + [("PHONE", p) for p in PHONES] + [("SSN", s) for s in SSNS]
    out += [("IP", ip) for ip in IPS] + [("SECRET", s) for s in secrets()]
    out += [("PRIVATE_KEY", k) for k in private_keys()]
    return out

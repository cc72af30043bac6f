"""Finding PII in text: the built-in patterns behind cheap prefilters, every candidate confirmed by its
validator.

Python's `re` is fast when a pattern starts with a literal (it skips ahead to it) and slow when it
must try a branch at every position (≈ 6–25 µs per KB per pattern). So no built-in pattern is tried
at every position of the text:
- keys and private keys start with literals (`sk-`, `AKIA`, `ghp_`, `-----BEGIN `…), which `re` skips
  ahead to (~0.6 µs/KB per pattern); a labelled AWS secret is looked for around "ecret" only;
- emails are looked for around each "@" only;
- cards, phones, SSNs, IPv4 addresses and IBANs all contain a run of digits and separators: one
  regex finds those runs, and the combined alternation of those patterns runs only in a small window
  around a run with at least nine digits (or three dots, for IPv4);
- IPv6 addresses are looked for around "::" or a run of colon-separated groups only.
Windows around anchors are merged, so a hostile text packed with anchors stays linear.
docs/guardrails.md has the measurements (python -m tools.bench.guardrails).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from proxy.guardrails.patterns import PATTERNS, PII_TYPES, Pattern


@dataclass(frozen=True)
class PiiMatch:
    pii_type: str
    start: int
    end: int


@dataclass(frozen=True)
class _Alternation:
    """Patterns compiled as one alternation; `singles` retry a position a look-alike took."""

    regex: re.Pattern[str]
    patterns: tuple[Pattern, ...]
    singles: tuple[re.Pattern[str], ...]


def _alternation(patterns: tuple[Pattern, ...]) -> _Alternation:
    # a pattern's own value group `v` becomes `v<i>` so the names stay unique in the alternation
    sources = [f"(?P<p{i}>{p.source.replace('(?P<v>', f'(?P<v{i}>')})" for i, p in enumerate(patterns)]
    return _Alternation(re.compile("|".join(sources)), patterns, tuple(re.compile(p.source) for p in patterns))


# [0-9] is a range test, cheaper in `re` than the \d category; a run ends on a digit
_DIGIT_RUN = re.compile(r"[0-9][0-9 .()/-]{6,}(?<=[0-9])")
# An ISO date opening a log line's run ("2024-05-01 10") is the commonest nine-digit run that is no PII
_DATE_HEAD = re.compile(r"(?:19|20)[0-9]{2}-[01][0-9]-[0-3][0-9](?![0-9])")
_SEPARATORS_GONE = str.maketrans("", "", " .()/-")
_MIN_DIGITS = 9
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d\d")
_IBAN_BACK = 16  # an IBAN's country, check digits and bank letters ("GB82 WEST ") come before its digit run
_IBAN_AHEAD = 44  # and letters may follow it ("…0013M02606")
# an IPv6 address has "::" or seven colons; times ("10:22:31") have two
_IPV6_HINT = re.compile(r"::|:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_IPV6_BACK, _IPV6_AHEAD = 40, 70  # "::" may come late in an address: 2001:db8:85a3::8a2e
_EMAIL_BACK, _EMAIL_AHEAD = 64, 340
_LOCAL_TAIL = re.compile(r"[A-Za-z0-9._%+-]+\Z")
_WORDISH = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class PiiScanner:
    """Finds the given PII types in text. Build through `pii_scanner` (cached per set of types)."""

    def __init__(self, types: frozenset[str]) -> None:
        unknown = types - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types: {sorted(unknown)}")
        self.types = types
        chosen = [p for p in PATTERNS if p.pii_type in types]
        self._prefixed = tuple((p, re.compile(p.source)) for p in chosen if p.find == "prefix")
        self._anchored = tuple(_alternation((p,)) for p in chosen if p.find == "anchor")
        self._email = _alternation(tuple(p for p in chosen if p.find == "at"))
        self._digits = _alternation(tuple(p for p in chosen if p.find == "digits"))
        ipv4 = tuple(p for p in chosen if p.find == "digits" and p.pii_type == "ip")
        self._ipv4_only = _alternation(ipv4) if ipv4 else None
        self._iban = "iban" in types
        self._ipv6 = _alternation(tuple(p for p in chosen if p.find == "colon"))
        self.max_len = max((p.max_len for p in chosen), default=0)
        self._short_len = max((p.max_len for p in chosen if not (p.find == "prefix" and p.needs) and p.find != "at"),
                              default=0)

    def find(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[PiiMatch]:
        """Confirmed matches in text[pos:endpos]; matches of different kinds may overlap."""
        end = len(text) if endpos is None else endpos
        for pattern, regex in self._prefixed:
            for m in regex.finditer(text, pos, end):
                found = _confirm(pattern, m, text, "v")
                if found is not None:
                    yield found
        for anchored in self._anchored:
            pattern = anchored.patterns[0]
            for need in pattern.needs:
                yield from self._around(anchored, text, pos, end, _find_all(text, need, pos, end),
                                        pattern.back, pattern.max_len)
        if self._email.patterns and "@" in text:
            yield from self._around(self._email, text, pos, end, _find_all(text, "@", pos, end),
                                    _EMAIL_BACK, _EMAIL_AHEAD)
        if self._digits.patterns:
            yield from self._in_runs(text, pos, end)
        if self._ipv6.patterns and ":" in text:
            hints = (m.start() for m in _IPV6_HINT.finditer(text, pos, end))
            yield from self._around(self._ipv6, text, pos, end, hints, _IPV6_BACK, _IPV6_AHEAD)

    def hold_from(self, text: str) -> int:
        """The earliest position of text where a match may have started that more text could still
        complete (the stream window keeps text from there). Long patterns (PEM blocks, JWTs, keys)
        only hold from their opening literal, when one is in reach; the rest by their length."""
        n = len(text)
        start = n - self._short_len
        for pattern, _ in self._prefixed:
            if not pattern.needs:
                continue
            for lead in pattern.needs:
                at = text.find(lead, max(0, n - pattern.max_len))
                start = min(start, at if at >= 0 else n - len(lead) + 1)
        if self._email.patterns:
            at = text.find("@", max(0, n - _EMAIL_AHEAD))
            if at >= 0:
                start = min(start, at - _EMAIL_BACK)
            else:  # no "@" yet: only a trailing word can become an email's local part
                tail = _LOCAL_TAIL.search(text, max(0, n - _EMAIL_BACK))
                start = min(start, tail.start() if tail else n)
        return max(0, start)

    def _in_runs(self, text: str, pos: int, end: int) -> Iterator[PiiMatch]:
        done = pos
        only_ipv4 = self._ipv4_only
        for run in _DIGIT_RUN.finditer(text, pos, end):
            start, stop = run.span()
            if stop <= done:
                continue
            chunk = run.group()
            # Cards, phones, SSNs and IBANs have at least nine digits; an IPv4 address has three dots.
            # Most runs in ordinary text (dates, versions, amounts) have neither, and stop here.
            digits = len(chunk.translate(_SEPARATORS_GONE))
            if digits - 8 < _MIN_DIGITS <= digits and _DATE_HEAD.match(chunk):
                digits -= 8
            ahead = 2  # two characters past the run let the patterns' look-aheads see what follows it
            if digits >= _MIN_DIGITS:
                alternation = self._digits
                if self._iban and _IBAN_HEAD.search(text, max(done, start - _IBAN_BACK), start + 2):
                    start -= _IBAN_BACK
                    ahead = _IBAN_AHEAD
                else:
                    start -= 1  # a phone's "+" or "("
            elif only_ipv4 is not None and chunk.count(".") >= 3:
                alternation = only_ipv4
            else:
                continue
            for found in _search_all(alternation, text, max(done, start), min(end, stop + ahead)):
                if found.end > run.start():
                    yield found
                    done = found.end

    def _around(self, alternation: _Alternation, text: str, pos: int, end: int, anchors: Iterator[int],
                back: int, ahead: int) -> Iterator[PiiMatch]:
        done = pos
        for start, stop in _merged_windows(anchors, back, ahead, pos, end):
            for found in _search_all(alternation, text, max(done, start), stop):
                yield found
                done = found.end


def _merged_windows(anchors: Iterator[int], back: int, ahead: int, pos: int, end: int) -> Iterator[tuple[int, int]]:
    """The windows around the anchors, overlapping ones merged: each character is searched once,
    however many anchors a hostile text packs in ("a@a@a@…")."""
    current: tuple[int, int] | None = None
    for anchor in anchors:
        start, stop = max(pos, anchor - back), min(end, anchor + ahead)
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], stop))
            continue
        if current is not None:
            yield current
        current = (start, stop)
    if current is not None:
        yield current


def _find_all(text: str, needle: str, pos: int, end: int) -> Iterator[int]:
    at = text.find(needle, pos, end)
    while at >= 0:
        yield at
        at = text.find(needle, at + 1, end)


def _search_all(alternation: _Alternation, text: str, pos: int, end: int) -> Iterator[PiiMatch]:
    search = alternation.regex.search
    while pos < end:
        m = search(text, pos, end)
        if m is None:
            return
        index = int(m.lastgroup[1:]) if m.lastgroup else 0
        found = _confirm(alternation.patterns[index], m, text, f"v{index}")
        j = index + 1
        # a look-alike at this position may hide a real match of a later pattern
        while found is None and j < len(alternation.patterns):
            other = alternation.singles[j].match(text, m.start(), end)
            if other is not None:
                found = _confirm(alternation.patterns[j], other, text, "v")
            j += 1
        if found is not None:
            yield found
            pos = found.end
        else:
            pos = m.start() + 1


def _confirm(pattern: Pattern, m: re.Match[str], text: str, value_group: str) -> PiiMatch | None:
    start, stop = m.span(value_group) if pattern.value_group else m.span()
    if pattern.find == "prefix" and start > 0 and text[start - 1] in _WORDISH:
        return None  # "task-…" holds "sk-", "mask_live_…" holds "sk_live_": a key starts a word
    if pattern.validate is not None and not pattern.validate(text[start:stop]):
        return None
    return PiiMatch(pattern.pii_type, start, stop)


@functools.lru_cache(maxsize=64)
def pii_scanner(types: frozenset[str]) -> PiiScanner:
    return PiiScanner(types)

"""A policy's rules compiled for one side of a call (input or output): what they detect in a text, and
the text rewritten with their masks. Detections carry rule ids and positions, never the matched text."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.guardrails.pii import PiiScanner, pii_scanner

# Matches longer than this may be missed across stream chunks (a user regex without an upper bound).
UNBOUNDED_MATCH_LEN = 1024


@dataclass(frozen=True)
class Consumer:
    """Who acts on a detection: a rule's id and action, and the label its mask shows."""

    rule_id: str
    action: str  # block | mask | warn | log | restore
    label: str


@dataclass(frozen=True)
class Detection:
    start: int
    end: int
    consumer: Consumer


RESTORE = Consumer("restore", "restore", "")
TOKEN_RE = re.compile(r"\[[A-Z][A-Z0-9_]{0,47}_\d{1,6}\]")  # labels: 32 (custom) or 48 (from a rule id)
TOKEN_MAX_LEN = 58


@dataclass(frozen=True)
class TextRule:
    """A rule that is one regex: a user's pattern or a custom PII pattern."""

    regex: re.Pattern[str]
    consumer: Consumer
    max_len: int


# pyahocorasick ships no type information; the one call made on it is typed by KeywordRule.
_ahocorasick: Any = importlib.import_module("ahocorasick")
_WHITESPACE_TO_SPACE = str.maketrans({c: " " for c in "\t\n\r\x0b\x0c\xa0\u2007\u202f"})


class KeywordRule:
    """A keyword list: case-insensitive, whole words, found with an Aho-Corasick automaton (one pass
    whatever the list's length; a regex alternation of varied keywords is tried at every position and
    costs ~100 times more). Words in a phrase are separated by one whitespace character."""

    def __init__(self, keywords: Sequence[str], consumer: Consumer, fallback: re.Pattern[str]) -> None:
        self.consumer = consumer
        self.fallback = fallback  # for the rare text whose lower-casing changes its length ("İ")
        self.automaton = _ahocorasick.Automaton()
        for keyword in {" ".join(k.lower().split()) for k in keywords}:
            self.automaton.add_word(keyword, len(keyword))
        self.automaton.make_automaton()
        self.max_len = max(len(k) for k in keywords) + 8

    def find(self, text: str, folded: str | None, pos: int, end: int) -> list[tuple[int, int]]:
        if folded is None:
            spans = [m.span() for m in self.fallback.finditer(text, pos, end)]
        else:
            spans = sorted(((last - length + 1, last + 1) for last, length in self.automaton.iter(folded, pos, end)),
                           key=lambda span: (span[0], -span[1]))
        found: list[tuple[int, int]] = []
        for start, stop in spans:
            if (not found or start >= found[-1][1]) and _word_bounded(text, start, stop):
                found.append((start, stop))  # leftmost, then longest: "project x" over "project"
        return found


def fold(text: str) -> str | None:
    """Text as keyword lists are matched: lower case, every whitespace a space; None if that would move
    positions (a few characters lower-case to two)."""
    folded = text.lower().translate(_WHITESPACE_TO_SPACE)
    return folded if len(folded) == len(text) else None


class SideMatcher:
    """Everything one side of a call checks: built-in PII (one scan serves every rule that asks for a
    type), custom PII patterns, regex and keyword rules, and — on output — the tokens to restore."""

    def __init__(self, *, pii: dict[str, tuple[Consumer, ...]], text_rules: tuple[TextRule, ...],
                 keyword_rules: tuple[KeywordRule, ...] = (), restore_tokens: bool = False) -> None:
        self.pii_consumers = pii
        self.scanner: PiiScanner | None = pii_scanner(frozenset(pii)) if pii else None
        self.text_rules = text_rules
        self.keyword_rules = keyword_rules
        self.restore_tokens = restore_tokens
        lengths = [rule.max_len for rule in text_rules] + [rule.max_len for rule in keyword_rules]
        if restore_tokens:
            lengths.append(TOKEN_MAX_LEN)
        self._fixed_hold = max(lengths, default=0)  # the built-in PII patterns say their own (hold_from)
        self.max_len = max(self._fixed_hold, self.scanner.max_len if self.scanner is not None else 0)

    def hold_from(self, text: str) -> int:
        """Where the stream window must keep text from: no match starting earlier can still grow."""
        start = len(text) - self._fixed_hold
        if self.scanner is not None:
            start = min(start, self.scanner.hold_from(text))
        return max(0, start)

    @property
    def active(self) -> bool:
        return bool(self.pii_consumers or self.text_rules or self.keyword_rules or self.restore_tokens)

    def detect(self, text: str, pos: int = 0, end: int | None = None) -> list[Detection]:
        stop = len(text) if end is None else end
        found: list[Detection] = []
        if self.scanner is not None:
            for m in self.scanner.find(text, pos, stop):
                found.extend(Detection(m.start, m.end, c) for c in self.pii_consumers[m.pii_type])
        for rule in self.text_rules:
            for hit in rule.regex.finditer(text, pos, stop):
                start, end_at = hit.span()
                if start != end_at:
                    found.append(Detection(start, end_at, rule.consumer))
        if self.keyword_rules:
            folded = fold(text)
            for keywords in self.keyword_rules:
                found.extend(Detection(a, b, keywords.consumer) for a, b in keywords.find(text, folded, pos, stop))
        if self.restore_tokens and "[" in text:
            found.extend(Detection(m.start(), m.end(), RESTORE) for m in TOKEN_RE.finditer(text, pos, stop))
        found.sort(key=lambda d: (d.start, -d.end))
        return found


def _word_bounded(text: str, start: int, end: int) -> bool:
    return not (start > 0 and text[start - 1].isalnum()) and not (end < len(text) and text[end].isalnum())


def rewrite(text: str, start: int, end: int, detections: Iterable[Detection],
            replacement: Callable[[Detection, str], str | None]) -> str:
    """text[start:end] with each chosen detection replaced. Overlapping detections: the earliest (then
    longest) wins; `replacement` returns None for a detection that leaves the text as it is."""
    parts: list[str] = []
    at = start
    for detection in detections:
        if detection.start < at:
            continue
        new = replacement(detection, text[detection.start:detection.end])
        if new is None:
            continue
        parts.append(text[at:detection.start])
        parts.append(new)
        at = detection.end
    parts.append(text[at:end])
    return "".join(parts)

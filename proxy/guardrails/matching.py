"""A policy's rules compiled for one side of a call (input or output): what they detect in a text, and
the text rewritten with their masks. Detections carry rule ids and positions, never the matched text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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
TOKEN_RE = re.compile(r"\[[A-Z][A-Z0-9_]{0,39}_\d{1,6}\]")
TOKEN_MAX_LEN = 48


@dataclass(frozen=True)
class TextRule:
    """A rule that is one regex (a user's pattern, a custom PII pattern, or a keyword list)."""

    regex: re.Pattern[str]
    consumer: Consumer
    max_len: int
    word_bounded: bool = False  # keywords: the match must not touch a letter or digit on either side


class SideMatcher:
    """Everything one side of a call checks: built-in PII (one scan serves every rule that asks for a
    type), custom PII patterns, regex and keyword rules, and — on output — the tokens to restore."""

    def __init__(self, *, pii: dict[str, tuple[Consumer, ...]], text_rules: tuple[TextRule, ...],
                 restore_tokens: bool = False) -> None:
        self.pii_consumers = pii
        self.scanner: PiiScanner | None = pii_scanner(frozenset(pii)) if pii else None
        self.text_rules = text_rules
        self.restore_tokens = restore_tokens
        lengths = [rule.max_len for rule in text_rules]
        if self.scanner is not None:
            lengths.append(self.scanner.max_len)
        if restore_tokens:
            lengths.append(TOKEN_MAX_LEN)
        self.max_len = max(lengths, default=0)

    @property
    def active(self) -> bool:
        return bool(self.pii_consumers or self.text_rules or self.restore_tokens)

    def detect(self, text: str, pos: int = 0, end: int | None = None) -> list[Detection]:
        stop = len(text) if end is None else end
        found: list[Detection] = []
        if self.scanner is not None:
            for m in self.scanner.find(text, pos, stop):
                found.extend(Detection(m.start, m.end, c) for c in self.pii_consumers[m.pii_type])
        for rule in self.text_rules:
            for hit in rule.regex.finditer(text, pos, stop):
                start, end_at = hit.span()
                if start == end_at or (rule.word_bounded and not _word_bounded(text, start, end_at)):
                    continue
                found.append(Detection(start, end_at, rule.consumer))
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

"""Guardrail policies: the spec's validation, its compiled form, and the per-call session that applies
it. Pure: no Django, no I/O. Nothing here keeps, raises or returns the text it matched — only rule ids,
actions and counts (the token map of a session, the one exception, lives and dies with the call)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from proxy.guardrails import injection
from proxy.guardrails.matching import (
    RESTORE,
    Consumer,
    Detection,
    KeywordRule,
    SideMatcher,
    TextRule,
    rewrite,
)
from proxy.guardrails.patterns import DEFAULT_PII_TYPES, LABELS, PII_TYPES
from proxy.guardrails.spec import keyword_regex, pattern_max_len, policy_problems
from proxy.guardrails.window import OutputFilter

__all__ = [
    "DEFAULT_PII_TYPES", "PII_TYPES", "CompiledPolicy", "GuardrailBlocked", "GuardrailSession", "OutputFilter",
    "SystemPrompt", "compile_policy", "merge_specs", "policy_problems",
]

SPEC_FIELDS = ("pii", "rules", "system_prompt", "injection")


class GuardrailBlocked(Exception):
    """A block rule matched. Its message names the rule and the side, never the text."""

    def __init__(self, rule_id: str, scope: str = "input") -> None:
        super().__init__(f"guardrail {rule_id} blocked the {scope}")
        self.rule_id = rule_id
        self.scope = scope


@dataclass(frozen=True)
class SystemPrompt:
    text: str
    mode: str  # prepend | replace


def merge_specs(account_default: Mapping[str, Any] | None,
                key_policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The effective spec of a key: each top-level field (pii, rules, system_prompt, injection) of the
    key's policy replaces the account's; a field the key sets to null switches the account's off."""
    if account_default is None and key_policy is None:
        return None
    merged: dict[str, Any] = {}
    for source in (account_default or {}, key_policy or {}):
        for field, value in source.items():
            merged[field] = value
    effective = {field: value for field, value in merged.items() if value is not None}
    return effective or None


def _label_of(rule_id: str) -> str:
    return rule_id.upper().replace("-", "_")


class CompiledPolicy:
    """A validated spec, compiled once (see compile_policy) and shared by every call of its keys."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        pii = spec.get("pii")
        self.replacement: str = pii.get("replacement", "label") if pii is not None else "label"
        self.restore: bool = pii is not None and bool(pii.get("restore")) and self.replacement == "token"
        input_pii: dict[str, list[Consumer]] = {}
        output_pii: dict[str, list[Consumer]] = {}
        input_rules: list[TextRule] = []
        output_rules: list[TextRule] = []
        input_keywords: list[KeywordRule] = []
        output_keywords: list[KeywordRule] = []
        if pii is not None:
            action = pii.get("action", "mask")
            for pii_type in pii.get("types", DEFAULT_PII_TYPES):
                input_pii.setdefault(pii_type, []).append(Consumer(f"pii-{pii_type}", action, LABELS[pii_type]))
            for custom in pii.get("custom", ()):
                label = custom.get("label") or _label_of(custom["id"])
                input_rules.append(TextRule(re.compile(custom["pattern"]), Consumer(custom["id"], action, label),
                                            pattern_max_len(custom["pattern"])))
        for rule in spec.get("rules", ()):
            scope = rule.get("scope", "input")
            sides = {"input": (input_pii, input_rules, input_keywords),
                     "output": (output_pii, output_rules, output_keywords)}
            chosen = [sides["input"], sides["output"]] if scope == "both" else [sides[scope]]
            kind = rule["kind"]
            for pii_side, rule_side, keyword_side in chosen:
                if kind == "pii":
                    for pii_type in rule["pii_types"]:
                        consumer = Consumer(rule["id"], rule["action"], LABELS[pii_type])
                        pii_side.setdefault(pii_type, []).append(consumer)
                elif kind == "regex":
                    consumer = Consumer(rule["id"], rule["action"], _label_of(rule["id"]))
                    rule_side.append(TextRule(re.compile(rule["pattern"]), consumer,
                                              pattern_max_len(rule["pattern"])))
                else:
                    consumer = Consumer(rule["id"], rule["action"], _label_of(rule["id"]))
                    fallback, _ = keyword_regex(rule["keywords"])
                    keyword_side.append(KeywordRule(rule["keywords"], consumer, fallback))
        self.input = SideMatcher(pii={t: tuple(c) for t, c in input_pii.items()}, text_rules=tuple(input_rules),
                                 keyword_rules=tuple(input_keywords))
        self.output = SideMatcher(pii={t: tuple(c) for t, c in output_pii.items()},
                                  text_rules=tuple(output_rules), keyword_rules=tuple(output_keywords),
                                  restore_tokens=self.restore)
        prompt = spec.get("system_prompt")
        self.system_prompt: SystemPrompt | None = (
            SystemPrompt(prompt["text"], prompt.get("mode", "prepend")) if prompt and prompt.get("text") else None)
        inj = spec.get("injection")
        inj = {} if inj is None else inj
        self.injection_enabled: bool = spec.get("injection") is not None and bool(inj.get("enabled", True))
        self.injection_threshold: float = float(inj.get("threshold", injection.DEFAULT_THRESHOLD))
        self.injection_action: str = inj.get("action", "block")

    @property
    def checks_output(self) -> bool:
        return self.output.active

    @property
    def checks_input(self) -> bool:
        return self.input.active

    def new_session(self) -> GuardrailSession:
        return GuardrailSession(self)


class GuardrailSession:
    """One call's use of a policy: its hits, its warned rules and (token mode) its token map."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self._hits: dict[tuple[str, str], int] = {}
        self._warned: dict[str, None] = {}
        self._token_of: dict[tuple[str, str], str] = {}
        self._value_of: dict[str, str] = {}
        self._counters: dict[str, int] = {}

    @property
    def hits(self) -> Mapping[tuple[str, str], int]:
        return MappingProxyType(self._hits)

    @property
    def warned(self) -> tuple[str, ...]:
        return tuple(self._warned)

    def _record(self, rule_id: str, action: str) -> None:
        key = (rule_id, action)
        self._hits[key] = self._hits.get(key, 0) + 1
        if action == "warn":
            self._warned.setdefault(rule_id, None)

    def scan_input(self, text: str) -> str:
        """The text as the provider may see it; raises GuardrailBlocked for a block rule."""
        side = self.policy.input
        if not side.active or not text:
            return text
        detections = side.detect(text)
        if not detections:
            return text
        self._account(detections, "input")
        return rewrite(text, 0, len(text), detections, self._mask)

    def check_injection(self, text: str) -> None:
        """Scores text for prompt injection; over the threshold, blocks or records per the policy."""
        policy = self.policy
        if not policy.injection_enabled or not text:
            return
        if injection.score(text).score >= policy.injection_threshold:
            self._record("injection", policy.injection_action)
            if policy.injection_action == "block":
                raise GuardrailBlocked("injection", "input")

    def output_filter(self) -> OutputFilter:
        return OutputFilter(self, self.policy.output.max_len)

    def filter_output_text(self, text: str) -> str:
        """A whole (non-streamed) answer's text, masked and restored; raises GuardrailBlocked."""
        if not self.policy.output.active or not text:
            return text
        return self.render_output(text, 0, len(text), self.detect_output(text, 0))

    # the OutputSide protocol of window.OutputFilter
    def detect_output(self, text: str, pos: int) -> list[Detection]:
        return self.policy.output.detect(text, pos)

    def output_hold_from(self, text: str) -> int:
        return self.policy.output.hold_from(text)

    def render_output(self, text: str, start: int, end: int, detections: list[Detection]) -> str:
        if not detections:
            return text[start:end]
        self._account(detections, "output")
        return rewrite(text, start, end, detections, self._mask)

    def _account(self, detections: list[Detection], scope: str) -> None:
        blocked = None
        for detection in detections:
            consumer = detection.consumer
            if consumer is RESTORE:
                continue
            self._record(consumer.rule_id, consumer.action)
            if consumer.action == "block" and blocked is None:
                blocked = consumer.rule_id
        if blocked is not None:
            raise GuardrailBlocked(blocked, scope)

    def _mask(self, detection: Detection, value: str) -> str | None:
        consumer = detection.consumer
        if consumer is RESTORE:
            return self._value_of.get(value)
        if consumer.action != "mask":
            return None
        if self.policy.replacement != "token":
            return f"[{consumer.label}]"
        key = (consumer.label, value)
        token = self._token_of.get(key)
        if token is None:
            number = self._counters.get(consumer.label, 0) + 1
            self._counters[consumer.label] = number
            token = f"[{consumer.label}_{number}]"
            self._token_of[key] = token
            self._value_of[token] = value
        return token


_CACHE: OrderedDict[str, CompiledPolicy] = OrderedDict()
_CACHE_SIZE = 512
_CACHE_LOCK = threading.Lock()


def compile_policy(spec: Mapping[str, Any]) -> CompiledPolicy:
    """The compiled policy of a spec (ValueError if invalid), cached by the spec's canonical hash."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=repr)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    with _CACHE_LOCK:  # configuration loads run in threads, off the event loop
        cached = _CACHE.get(digest)
        if cached is not None:
            _CACHE.move_to_end(digest)
            return cached
    problems = policy_problems(spec)
    if problems:
        raise ValueError("invalid guardrail policy: " + "; ".join(problems))
    compiled = CompiledPolicy(spec)
    with _CACHE_LOCK:
        _CACHE[digest] = compiled
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled

"""The guardrail policy spec's shape and limits (docs/guardrails.md): policy_problems says what is wrong,
in "field: problem" sentences that never repeat a pattern or keyword back."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from proxy.guardrails.matching import UNBOUNDED_MATCH_LEN
from proxy.guardrails.patterns import PII_TYPES

# The regex parser `re` itself uses: the only way to see a pattern's structure (its nested repeats, its
# longest match). Its public aliases (sre_parse) warn on import since Python 3.11.
sre_parse: Any = importlib.import_module("re._parser")
sre_constants: Any = importlib.import_module("re._constants")

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,47}\Z")
LABEL = re.compile(r"[A-Z][A-Z0-9_]{0,31}\Z")
ACTIONS = ("block", "mask", "warn", "log")
INJECTION_ACTIONS = ("block", "warn", "log")
MAX_RULES, MAX_KEYWORDS, MAX_PATTERN, MAX_KEYWORD, MAX_CUSTOM = 50, 200, 500, 100, 20
MAX_SYSTEM_PROMPT = 20_000

_FIELDS = {"pii", "rules", "system_prompt", "injection"}
_PII_FIELDS = {"types", "action", "replacement", "restore", "custom"}
_RULE_FIELDS = {"id", "kind", "pattern", "keywords", "pii_types", "scope", "action"}
_CUSTOM_FIELDS = {"id", "pattern", "label"}


def policy_problems(spec: Mapping[str, Any]) -> list[str]:
    """Human messages, "field: problem"; [] when the spec is valid."""
    if not isinstance(cast(object, spec), Mapping):  # YAML and JSON hand over anything
        return ["policy: must be a mapping"]
    problems = [f"{f}: unknown field" for f in sorted(set(spec) - _FIELDS, key=str)]
    if spec.get("pii") is not None:
        problems += _pii_problems(spec["pii"])
    if spec.get("rules") is not None:
        problems += _rules_problems(spec["rules"])
    if spec.get("system_prompt") is not None:
        problems += _system_prompt_problems(spec["system_prompt"])
    if spec.get("injection") is not None:
        problems += _injection_problems(spec["injection"])
    return problems


def _system_prompt_problems(prompt: Any) -> list[str]:
    if not isinstance(prompt, Mapping):
        return ["system_prompt: must be a mapping with text and mode"]
    problems = _unknown("system_prompt", prompt, {"text", "mode"})
    text = prompt.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("system_prompt.text: must be non-empty text")
    elif len(text) > MAX_SYSTEM_PROMPT:
        problems.append(f"system_prompt.text: at most {MAX_SYSTEM_PROMPT:,} characters")
    if prompt.get("mode", "prepend") not in ("prepend", "replace"):
        problems.append("system_prompt.mode: must be prepend or replace")
    return problems


def _injection_problems(settings: Any) -> list[str]:
    if not isinstance(settings, Mapping):
        return ["injection: must be a mapping"]
    problems = _unknown("injection", settings, {"enabled", "threshold", "action"})
    if not isinstance(settings.get("enabled", True), bool):
        problems.append("injection.enabled: must be true or false")
    threshold = settings.get("threshold", 0.7)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        problems.append("injection.threshold: must be a number above 0 and at most 1")
    if settings.get("action", "block") not in INJECTION_ACTIONS:
        problems.append(f"injection.action: must be one of {', '.join(INJECTION_ACTIONS)}")
    return problems


def _unknown(where: str, given: Mapping[str, Any], known: set[str]) -> list[str]:
    return [f"{where}.{f}: unknown field" for f in sorted(set(given) - known, key=str)]


def _pii_problems(pii: Any) -> list[str]:
    if not isinstance(pii, Mapping):
        return ["pii: must be a mapping"]
    problems = _unknown("pii", pii, _PII_FIELDS)
    types = pii.get("types", list(PII_TYPES))
    problems += _types_problems("pii.types", types)
    if pii.get("action", "mask") not in ACTIONS:
        problems.append(f"pii.action: must be one of {', '.join(ACTIONS)}")
    if pii.get("replacement", "label") not in ("label", "token"):
        problems.append("pii.replacement: must be label or token")
    if not isinstance(pii.get("restore", False), bool):
        problems.append("pii.restore: must be true or false")
    elif pii.get("restore") and pii.get("replacement", "label") != "token":
        problems.append("pii.restore: needs replacement: token")
    custom = pii.get("custom", [])
    if not isinstance(custom, list):
        return problems + ["pii.custom: must be a list"]
    if len(custom) > MAX_CUSTOM:
        problems.append(f"pii.custom: at most {MAX_CUSTOM} patterns")
    seen: set[str] = set()
    for i, item in enumerate(custom[:MAX_CUSTOM]):
        where = f"pii.custom[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += _unknown(where, item, _CUSTOM_FIELDS)
        problems += _id_problems(where, item.get("id"), seen)
        problems += _pattern_problems(f"{where}.pattern", item.get("pattern"))
        label = item.get("label")
        if label is not None and (not isinstance(label, str) or not LABEL.match(label)):
            problems.append(f"{where}.label: must be capitals, digits and _ (up to 32), starting with a letter")
    return problems


def _types_problems(where: str, types: Any) -> list[str]:
    if not isinstance(types, list) or not types:
        return [f"{where}: must be a non-empty list of {', '.join(PII_TYPES)}"]
    unknown = [t for t in types if t not in PII_TYPES]
    if unknown:
        return [f"{where}: unknown type(s); known: {', '.join(PII_TYPES)}"]
    return []


def _id_problems(where: str, rule_id: Any, seen: set[str]) -> list[str]:
    if not isinstance(rule_id, str) or not SLUG.match(rule_id):
        return [f"{where}.id: must be a slug: a-z, 0-9 and -, up to 48, not starting with -"]
    if rule_id in seen or rule_id == "injection" or rule_id.startswith("pii-"):
        return [f"{where}.id: {rule_id} is already used (or reserved)"]
    seen.add(rule_id)
    return []


def _rules_problems(rules: Any) -> list[str]:
    if not isinstance(rules, list):
        return ["rules: must be a list"]
    problems = [f"rules: at most {MAX_RULES} rules"] if len(rules) > MAX_RULES else []
    seen: set[str] = set()
    for i, rule in enumerate(rules[:MAX_RULES]):
        where = f"rules[{i}]"
        if not isinstance(rule, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += _unknown(where, rule, _RULE_FIELDS)
        problems += _id_problems(where, rule.get("id"), seen)
        kind = rule.get("kind")
        if kind == "regex":
            problems += _pattern_problems(f"{where}.pattern", rule.get("pattern"))
        elif kind == "keywords":
            problems += _keywords_problems(f"{where}.keywords", rule.get("keywords"))
        elif kind == "pii":
            problems += _types_problems(f"{where}.pii_types", rule.get("pii_types"))
        else:
            problems.append(f"{where}.kind: must be regex, keywords or pii")
        if rule.get("scope", "input") not in ("input", "output", "both"):
            problems.append(f"{where}.scope: must be input, output or both")
        if rule.get("action") not in ACTIONS:
            problems.append(f"{where}.action: must be one of {', '.join(ACTIONS)}")
    return problems


def _keywords_problems(where: str, keywords: Any) -> list[str]:
    if not isinstance(keywords, list) or not keywords:
        return [f"{where}: must be a non-empty list of words or phrases"]
    if len(keywords) > MAX_KEYWORDS:
        return [f"{where}: at most {MAX_KEYWORDS} keywords"]
    if any(not isinstance(k, str) or not k.strip() or len(k) > MAX_KEYWORD for k in keywords):
        return [f"{where}: each keyword must be text of 1 to {MAX_KEYWORD} characters"]
    return []


def _pattern_problems(where: str, pattern: Any) -> list[str]:
    if not isinstance(pattern, str) or not pattern:
        return [f"{where}: must be a regular expression"]
    if len(pattern) > MAX_PATTERN:
        return [f"{where}: at most {MAX_PATTERN} characters"]
    try:
        parsed = sre_parse.parse(pattern)
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError, AssertionError) as error:
        # re's message only when it cannot quote the pattern ("bad character range z-a" does)
        message = getattr(error, "msg", "")
        reason = message if message.startswith(_SAFE_REGEX_ERRORS) else "invalid"
        position = getattr(error, "pos", None)
        at = f", at character {position + 1}" if position is not None else ""
        return [f"{where}: does not compile ({reason}{at})"]
    if parsed.getwidth()[0] == 0:
        return [f"{where}: must not match the empty string"]
    risky = _risky(parsed.data, inside_repeat=False)
    return [f"{where}: {risky}"] if risky else []


_SAFE_REGEX_ERRORS = ("missing )", "unbalanced parenthesis", "nothing to repeat", "multiple repeat",
                      "look-behind requires fixed-width pattern", "min repeat greater than max repeat",
                      "global flags not at the start", "unterminated character set", "missing group name")
_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, getattr(sre_constants, "POSSESSIVE_REPEAT", None))


def _risky(items: Sequence[Any], *, inside_repeat: bool) -> str | None:
    """Features that make a backtracking regex slow on hostile input: a repeat of a repeat (`(a+)+`),
    and back-references."""
    for op, arg in items:
        if op in _REPEATS:
            low, high, sub = arg
            unbounded = high == sre_constants.MAXREPEAT or high > 1000
            if inside_repeat and unbounded:
                return "nested repetition (like (a+)+) can take exponential time; bound the inner one"
            found = _risky(sub.data if hasattr(sub, "data") else sub, inside_repeat=inside_repeat or unbounded)
            if found:
                return found
        elif op == sre_constants.SUBPATTERN:
            found = _risky(arg[-1].data, inside_repeat=inside_repeat)
            if found:
                return found
        elif op == sre_constants.BRANCH:
            for branch in arg[1]:
                found = _risky(branch.data, inside_repeat=inside_repeat)
                if found:
                    return found
        elif op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            return "back-references are not allowed"
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            found = _risky(arg[1].data, inside_repeat=inside_repeat)
            if found:
                return found
    return None


def pattern_max_len(pattern: str) -> int:
    """The longest match a pattern can make (the stream window it needs), capped for unbounded ones."""
    high = sre_parse.parse(pattern).getwidth()[1]
    return min(int(high), UNBOUNDED_MATCH_LEN)


def keyword_regex(keywords: Sequence[str]) -> tuple[re.Pattern[str], int]:
    """One case-insensitive regex for a keyword list (word boundaries are checked by the caller), and
    the longest keyword: matching.KeywordRule's fallback. Longest first, so "project x" wins over
    "project"."""
    words = sorted({" ".join(k.split()) for k in keywords}, key=lambda k: (-len(k), k))
    source = "|".join(r"\s".join(re.escape(part) for part in word.split(" ")) for word in words)
    return re.compile(source, re.IGNORECASE), max(len(w) for w in words)

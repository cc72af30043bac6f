"""Guardrail engine measurements (docs/guardrails.md), outside the test suite.

    python -m tools.bench.guardrails              # CPU µs per KB of prompt: off, default PII set, keywords
    python -m tools.bench.guardrails --injection  # the injection heuristic's precision and recall
    python -m tools.bench.guardrails --injection --threshold 0.5

The prompts are built here, deterministically: prose, logs (dates, versions, UUIDs, hashes, IPs), code
and JSON, with a little PII in them (about one item per 2 KB), as a chat prompt carries.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import random
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from proxy.guardrails import injection
from proxy.guardrails.policy import DEFAULT_PII_TYPES, CompiledPolicy, compile_policy
from proxy.guardrails.spec import keyword_regex

SIZES = (1024, 32 * 1024, 1024 * 1024)
OWN_CASES = Path(__file__).resolve().parents[2] / "tests" / "guardrails" / "data" / "injection_cases.jsonl"

_PROSE = (
    "The quarterly report shows revenue grew 12% to 4.2 million, driven by the new enterprise tier. ",
    "Please summarise the meeting notes below and list the action items with their owners. ",
    "We migrated the billing service to version 2.14.3 on 2024-03-18 and saw no regressions. ",
    "Can you rewrite this paragraph in a friendlier tone for our customers in Germany and France? ",
    "Order 100234 shipped on 12/03/2024; the tracking page says it left the depot at 14:32. ",
    "Our API returns 429 when the rate limit of 600 requests per minute is exceeded. ",
)
_LOGS = (
    "2024-05-01T10:22:31.123Z INFO  worker-3 job=7f9c2d1e-4b5a-4c3d-9e8f-0a1b2c3d4e5f finished in 231 ms\n",
    "2024-05-01 10:22:32,004 WARN  pool size 32/64, queue 118, commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f\n",
    "GET /api/v1/orders?page=3&limit=50 200 17ms ua=Mozilla/5.0 build=1.18.0-rc.2\n",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 layer pulled (12.4 MB)\n",
)
_CODE = (
    "def total(items: list[Item]) -> Decimal:\n    return sum((i.price * i.qty for i in items), Decimal(0))\n\n",
    "const cfg = { retries: 3, timeoutMs: 2500, endpoint: `${BASE}/v2/items` };\n",
    "SELECT id, created_at, amount FROM invoices WHERE account_id = $1 ORDER BY created_at DESC LIMIT 100;\n",
    '{"id": 4411, "status": "paid", "items": [{"sku": "AB-1002", "qty": 2, "price": 19.99}], "v": "3.2.1"}\n',
)
_PII = (
    "Contact jane.doe@example.com for access. ", "Call me on +44 20 7946 0958 tomorrow. ",
    "Card on file: 4111 1111 1111 1111. ", "Wire to DE89 3704 0044 0532 0130 00 please. ",
    "The server is at 192.168.14.20. ", "OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z\n",
)


def prompt_of(size: int, seed: int = 7) -> str:
    rng = random.Random(seed)  # noqa: S311 - a reproducible test prompt, not a secret
    parts: list[str] = []
    length = 0
    while length < size:
        family = rng.choice((_PROSE, _PROSE, _LOGS, _CODE))
        piece = rng.choice(family) if rng.random() > 0.02 else rng.choice(_PII)
        parts.append(piece)
        length += len(piece)
    return "".join(parts)[:size]


def cpu_us_per_kb(work: Callable[[str], object], text: str, *, rounds: int = 7) -> float:
    """Median CPU time of `work(text)` in µs per KB; small texts repeat inside a round to be measurable."""
    repeat = max(1, (256 * 1024) // len(text))
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeat):
            work(text)
        samples.append((time.process_time() - start) / repeat)
    return statistics.median(samples) * 1e6 / (len(text) / 1024)


def bench_pii() -> list[tuple[str, int, float]]:
    default = compile_policy({"pii": {"types": list(DEFAULT_PII_TYPES)}})
    no_rules = compile_policy({"system_prompt": {"text": "Be brief."}})
    words = _keywords(200)
    keywords = compile_policy({"rules": [{"id": "words", "kind": "keywords", "action": "mask", "keywords": words}]})
    alternation, _ = keyword_regex(words)
    streamed = compile_policy({"rules": [{"id": "answers", "kind": "pii", "pii_types": list(DEFAULT_PII_TYPES),
                                          "scope": "output", "action": "mask"}]})
    rows = []
    for size in SIZES:
        text = prompt_of(size)
        rows.append(("off (no input rules)", size, cpu_us_per_kb(lambda t: no_rules.new_session().scan_input(t), text)))
        rows.append(("default PII set", size, cpu_us_per_kb(lambda t: default.new_session().scan_input(t), text)))
        rows.append(("200 keywords, Aho-Corasick", size,
                     cpu_us_per_kb(lambda t: keywords.new_session().scan_input(t), text)))
        if size <= 32 * 1024:  # ~1.3 ms per KB: a 1 MB prompt would take a second and a half per round
            rows.append(("200 keywords, one regex", size,
                         cpu_us_per_kb(lambda t: list(alternation.finditer(t)), text, rounds=3)))
        rows.append(("injection score", size, cpu_us_per_kb(injection.score, text, rounds=3)))
        if size <= 32 * 1024:
            rows.append(("stream: all types, 4-char deltas", size,
                         cpu_us_per_kb(lambda t: _stream(streamed, t), text, rounds=3)))
    return rows


def _stream(policy: CompiledPolicy, text: str) -> None:
    window = policy.new_session().output_filter()
    for i in range(0, len(text), 4):
        window.feed(text[i:i + 4])
    window.finish()


def _keywords(count: int) -> list[str]:
    """Varied words and phrases, as a real list is (a shared prefix would flatter the regex)."""
    rng = random.Random(11)  # noqa: S311 - reproducible test data
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(4, 10))) for _ in range(count)]
    return [f"{w} {words[i - 1]}" if i % 5 == 0 else w for i, w in enumerate(words)]


def load_bastioncorpus() -> list[tuple[str, bool]]:
    path = importlib.resources.files("bastioncorpus").joinpath("corpus/injections.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["text"], row["label"] == "malicious") for row in rows]


def load_own_cases() -> list[tuple[str, bool]]:
    rows = [json.loads(line) for line in OWN_CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["text"], row["label"] == "attack") for row in rows]


def precision_recall(cases: Iterable[tuple[str, bool]],
                     threshold: float = injection.DEFAULT_THRESHOLD) -> tuple[float, float, int, int, int, int]:
    tp = fp = fn = tn = 0
    for text, is_attack in cases:
        flagged = injection.score(text).score >= threshold
        tp += flagged and is_attack
        fp += flagged and not is_attack
        fn += (not flagged) and is_attack
        tn += (not flagged) and not is_attack
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, tp, fp, fn, tn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--injection", action="store_true", help="precision and recall of the injection score")
    parser.add_argument("--threshold", type=float, default=injection.DEFAULT_THRESHOLD,
                        help="the injection threshold to evaluate (default: the policy default)")
    args = parser.parse_args(argv)
    if args.injection:
        print(f"threshold {args.threshold}")
        for name, cases in (("bastioncorpus 0.6.0 (PyPI, MIT)", load_bastioncorpus()),
                            ("tests/guardrails/data/injection_cases.jsonl", load_own_cases())):
            precision, recall, tp, fp, fn, tn = precision_recall(cases, args.threshold)
            print(f"{name}: {len(cases)} cases  precision {precision:.3f}  recall {recall:.3f}  "
                  f"(tp {tp} fp {fp} fn {fn} tn {tn})")
        return
    print(f"{'what':<34}{'text':>8}{'µs CPU / KB (median)':>24}")
    for what, size, value in bench_pii():
        print(f"{what:<34}{_size(size):>8}{value:>24.2f}")


def _size(size: int) -> str:
    return f"{size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


if __name__ == "__main__":
    main()

"""Request bodies of the wrong types, huge numbers, NUL and deep nesting, on every metered route: a clear
error in the provider's format or a metered call, never a 5xx, a stalled ledger or a new /metrics series."""

from __future__ import annotations

import json

from hypothesis import example, given

from .conftest import BOUNDED
from .invariants import Judge
from .strategies import Case, body_cases


def _chat(provider: str = "openai", **fields: object) -> Case:
    body = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **fields}
    case = Case("POST", provider, "/chat/completions", body=json.dumps(body).encode())
    if isinstance(body["model"], str):
        case.hostile["model"] = [body["model"].encode()]
    return case


def test_bodies_get_a_clear_answer_and_are_metered(in_process: Judge) -> None:
    @BOUNDED
    @given(case=body_cases())
    @example(case=_chat(model="gpt-4o-mini\x00"))
    @example(case=_chat(model="m" * 300))
    @example(case=_chat(n=10**30))
    @example(case=_chat(max_tokens=2**63, n=2**63))
    @example(case=_chat(provider="vllm-internal"))
    @example(case=_chat(model="model-nobody-prices"))
    @example(case=Case("POST", "openai", "/chat/completions", body=b"[" * 5000 + b"]" * 5000))
    def each(case: Case) -> None:
        in_process.run(case)

    each()
    in_process.finish()

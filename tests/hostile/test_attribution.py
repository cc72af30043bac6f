"""Attribution headers of any byte content and length (CONTRACT §1: data, never structure): they cannot
move another tenant's or account's counters, stall the ledger, or add series to /metrics."""

from __future__ import annotations

import orjson
from hypothesis import example, given

from .conftest import BOUNDED
from .invariants import Judge
from .strategies import ATTRIBUTION, Case, attribution_cases


def _chat(**values: bytes) -> Case:
    body = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    case = Case("POST", "openai", "/chat/completions", body=body)
    for name, value in values.items():
        case.headers.append((ATTRIBUTION[name], value))
        case.hostile[name] = [value]
    return case


def test_attribution_values_stay_data(in_process: Judge) -> None:
    @BOUNDED
    @given(case=attribution_cases())
    @example(case=_chat(feature=b"f" * 70_000, tenant=b"t" * 70_000, environment=b"e" * 70_000))
    @example(case=_chat(tenant=b"a|tk:{a:1}:b:1:0", feature=b"}{|*"))
    @example(case=_chat(environment=b"env-\xff\xfe-1", feature=b"feature-\xc3\xa9-1"))
    @example(case=_chat(tags=b", ".join(b"k%d=%s" % (i, b"v" * 5000) for i in range(40))))
    def each(case: Case) -> None:
        in_process.run(case)

    each()
    in_process.finish()

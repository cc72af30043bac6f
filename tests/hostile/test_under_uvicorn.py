"""The same invariants with the proxy worker served by uvicorn in a process of its own, as production
runs it: raw bytes on a socket, so whatever uvicorn accepts (control bytes, huge headers) reaches the
proxy as a real deployment's would, and /metrics is the worker's own."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from .conftest import BOUNDED
from .invariants import Judge
from .strategies import Case, attribution_cases, body_cases, chat_body, path_cases

# What a client can put on the wire but a proxy rarely sees: uvicorn decides what reaches the application.
wire_bytes = st.binary(min_size=1, max_size=64).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))

WIRE_HEADERS = {"tenant": b"x-tenant-id", "feature": b"x-feature-name", "environment": b"x-environment",
                "custom": b"x-custom"}


@st.composite
def wire_cases(draw: st.DrawFn) -> Case:
    case = draw(st.one_of(path_cases(), attribution_cases(), body_cases()))
    if draw(st.integers(0, 3)) == 0:
        label, name = draw(st.sampled_from(list(WIRE_HEADERS.items())))
        value = draw(wire_bytes)
        case.headers.append((name, value))
        case.hostile.setdefault(label, []).append(value)
    return case


def _case(rest: str, *headers: tuple[bytes, bytes]) -> Case:
    return Case("POST", "openai", rest, headers=list(headers), body=chat_body("openai", rest))


def test_invariants_hold_under_uvicorn(under_uvicorn: Judge) -> None:
    @settings(BOUNDED, max_examples=30)
    @given(case=wire_cases())
    @example(case=_case("/chat%2Fcompletions"))
    @example(case=_case("/chat/completions", (b"x-tenant-id", b"t\x00|x"), (b"x-feature-name", b"\x01\x7f")))
    @example(case=_case("/chat/completions", (b"x-environment", b"e" * 60_000)))
    def each(case: Case) -> None:
        under_uvicorn.run(case)

    each()
    under_uvicorn.finish()

"""Paths in every encoding: what the provider performs is what was metered, and an encoded separator or
dot segment is refused with 400 invalid_path before the provider is called (CONTRACT §1, "One path")."""

from __future__ import annotations

from hypothesis import example, given

from .conftest import BOUNDED
from .invariants import Judge
from .strategies import Case, chat_body, path_cases


def _post(provider: str, rest: str) -> Case:
    headers = [(b"anthropic-version", b"2023-06-01")] if provider == "anthropic" else []
    return Case("POST", provider, rest, headers=headers, body=chat_body(provider, rest))


def test_every_path_is_metered_as_the_provider_performs_it(in_process: Judge) -> None:
    @BOUNDED
    @given(case=path_cases())
    @example(case=_post("openai", "/chat%2Fcompletions"))
    @example(case=_post("openai", "/chat/./completions"))
    @example(case=_post("openai", "/v1/x/%2e%2e/chat/completions"))
    @example(case=_post("openai", "/embeddings/..%2Fchat/completions"))
    @example(case=_post("anthropic", "/v1/messages%3F"))
    @example(case=_post("openai", "/chat/completions%23x"))
    @example(case=_post("openai", "/chat/completions"))
    @example(case=_post("not-configured-q7", "/chat/completions"))
    @example(case=_post("openai%2fx", "/chat/completions"))  # metered as unmetered, performed as chat
    def each(case: Case) -> None:
        in_process.run(case)

    each()
    in_process.finish()

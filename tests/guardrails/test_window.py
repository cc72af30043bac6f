"""Output filtering on streams: matches split across chunks are still found, tokens split across chunks
are still restored, only the longest match's length is held back, and a block raises."""

from __future__ import annotations

import random

import pytest

from proxy.guardrails.policy import GuardrailBlocked, compile_policy

CARD_OUT = {"rules": [{"id": "cards-out", "kind": "pii", "pii_types": ["card"], "scope": "output",
                       "action": "mask"}]}


def _stream(policy_spec: dict, chunks: list[str], session_input: str = "") -> str:
    session = compile_policy(policy_spec).new_session()
    if session_input:
        session.scan_input(session_input)
    window = session.output_filter()
    return "".join(window.feed(chunk) for chunk in chunks) + window.finish()


def _split_everywhere(text: str) -> list[list[str]]:
    return [[text[:i], text[i:]] for i in range(1, len(text))]


def test_a_card_split_over_two_chunks_is_masked_wherever_the_split_falls() -> None:
    text = "Your card 4111 1111 1111 1111 is on file."
    for chunks in _split_everywhere(text):
        assert _stream(CARD_OUT, chunks) == "Your card [CARD] is on file.", chunks


def test_a_card_streamed_one_character_at_a_time_is_masked() -> None:
    assert _stream(CARD_OUT, list("a 5555-5555-5555-4444 b")) == "a [CARD] b"


def test_random_chunkings_give_the_same_answer_as_the_whole_text() -> None:
    spec = {"rules": [{"id": "out-pii", "kind": "pii", "pii_types": ["card", "email", "iban", "phone", "secret"],
                       "scope": "output", "action": "mask"},
                      {"id": "codename", "kind": "keywords", "keywords": ["project atlas"], "scope": "output",
                       "action": "mask"}]}
    text = ("Mail jane.doe@example.com about Project\nAtlas; card 4012 8888 8888 1881, IBAN GB82 WEST 1234 5698 "
            "7654 32, phone +44 20 7946 0958, key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z. Done.") * 3
    whole = compile_policy(spec).new_session().filter_output_text(text)
    assert "4012" not in whole and "Atlas" not in whole
    rng = random.Random(18)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 40)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert _stream(spec, chunks) == whole


def test_a_token_split_across_chunks_is_restored() -> None:
    spec = {"pii": {"types": ["email"], "replacement": "token", "restore": True}}
    for chunks in _split_everywhere("Sent to [EMAIL_1] and [EMAIL_2]."):
        assert _stream(spec, chunks, "a@example.com b@example.org") == "Sent to a@example.com and b@example.org."


def test_only_the_longest_match_is_held_back() -> None:
    session = compile_policy(CARD_OUT).new_session()
    window = session.output_filter()
    released = window.feed("x" * 100)
    assert len(released) >= 100 - 23 and window.finish() == "x" * (100 - len(released))


def test_text_is_released_as_soon_as_no_match_can_reach_back() -> None:
    window = compile_policy(CARD_OUT).new_session().output_filter()
    out = [window.feed("word " * 20) for _ in range(10)]
    assert all(out[1:]) and "".join(out) + window.finish() == "word " * 200


def test_block_on_output_raises_once_the_match_is_complete() -> None:
    spec = {"rules": [{"id": "no-cards", "kind": "pii", "pii_types": ["card"], "scope": "output",
                       "action": "block"}]}
    window = compile_policy(spec).new_session().output_filter()
    released = window.feed("Here it is: 4111 1111 ")
    assert "4111" not in released
    with pytest.raises(GuardrailBlocked) as caught:
        window.feed("1111 1111 and more text to push the window past the card")
        window.finish()
    assert (caught.value.rule_id, caught.value.scope) == ("no-cards", "output")


def test_warn_on_output_counts_each_match_once_across_chunks() -> None:
    spec = {"rules": [{"id": "cards-warn", "kind": "pii", "pii_types": ["card"], "scope": "output",
                       "action": "warn"}]}
    session = compile_policy(spec).new_session()
    window = session.output_filter()
    text = "a 4111 1111 1111 1111 b 5555 5555 5555 4444 c"
    out = "".join(window.feed(c) for c in text) + window.finish()
    assert out == text
    assert session.hits == {("cards-warn", "warn"): 2} and session.warned == ("cards-warn",)


def test_no_output_rules_means_nothing_is_held() -> None:
    policy = compile_policy({"pii": {"types": ["email"]}})
    window = policy.new_session().output_filter()
    assert not policy.checks_output
    assert window.feed("a@example.com") == "a@example.com" and window.finish() == ""


def test_a_long_rule_label_token_is_restored_across_chunks() -> None:
    rule_id = "a-very-long-rule-identifier-of-forty-eight-chars"
    spec = {"pii": {"types": ["email"], "replacement": "token", "restore": True},
            "rules": [{"id": rule_id, "kind": "regex", "pattern": r"ACCT-\d{4}", "action": "mask"}]}
    session = compile_policy(spec).new_session()
    masked = session.scan_input("ACCT-1234")
    assert masked == f"[{rule_id.upper().replace('-', '_')}_1]"
    window = session.output_filter()
    out = "".join(window.feed(c) for c in f"ok {masked} done") + window.finish()
    assert out == "ok ACCT-1234 done"


@pytest.mark.parametrize("types", [["card"], ["email", "card"], ["card", "email", "iban", "phone", "ssn", "ip",
                                                                  "secret", "private_key"]])
def test_never_holds_more_than_the_longest_match(types: list[str]) -> None:
    # warn leaves the text as it is, so what is released can be counted against what was fed
    spec = {"rules": [{"id": "out", "kind": "pii", "pii_types": types, "scope": "output", "action": "warn"}]}
    policy = compile_policy(spec)
    window = policy.new_session().output_filter()
    released = 0
    text = "Write to jane@example.com, card 4111 1111 1111 1111, and some ordinary prose. " * 5
    for fed, char in enumerate(text, start=1):
        released += len(window.feed(char))
        assert fed - released <= policy.output.max_len


def test_long_patterns_hold_text_only_once_their_opening_is_seen() -> None:
    spec = {"rules": [{"id": "keys", "kind": "pii", "pii_types": ["secret", "private_key"], "scope": "output",
                       "action": "mask"}]}
    window = compile_policy(spec).new_session().output_filter()
    prose = "An ordinary answer with no keys in it at all. " * 40
    released = sum(len(window.feed(prose[i:i + 5])) for i in range(0, len(prose), 5))
    assert len(prose) - released <= 300  # not the 8 KB a private key may need
    window.feed("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n")
    held = window.feed("x" * 400)
    assert "MIIE" not in held and "x" * 400 not in held


def test_random_chunkings_with_restore_and_output_masks_equal_the_whole_text() -> None:
    spec = {"pii": {"types": ["email", "secret"], "replacement": "token", "restore": True},
            "rules": [{"id": "cards-out", "kind": "pii", "pii_types": ["card", "private_key"], "scope": "output",
                       "action": "mask"}]}
    prompt = "Write to a@example.com and b@example.org with key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    answer = ("Done: [EMAIL_1], [EMAIL_2] ([SECRET_1]); card 5105 1051 0510 5100 kept. [EMAIL_3] unknown. "
              "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\nbye ") * 2
    reference = compile_policy(spec).new_session()
    reference.scan_input(prompt)
    whole = reference.filter_output_text(answer)
    assert "a@example.com" in whole and "sk-proj-" in whole and "5105" not in whole and "MIIE" not in whole
    rng = random.Random(5)
    for _ in range(25):
        cuts = sorted(rng.sample(range(1, len(answer)), rng.randint(1, 60)))
        chunks = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
        assert _stream(spec, chunks, prompt) == whole

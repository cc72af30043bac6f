"""The usage event's guardrail hits as the ledger stores them: rule slugs, known actions, bounded counts."""

from __future__ import annotations

from proxy.usage_bounds import MAX_GUARDRAIL_HITS, MAX_TOKENS, guardrail_hits_clean, usage_event_clean


def test_only_slugs_known_actions_and_clamped_counts_are_kept() -> None:
    hits = [
        {"rule": "pii-email", "action": "mask", "count": 2},
        {"rule": "Not A Slug", "action": "mask", "count": 1},
        {"rule": "x" * 49, "action": "block", "count": 1},
        {"rule": "ok", "action": "shred", "count": 1},
        {"rule": "big", "action": "log", "count": 10**20},
        {"rule": "neg", "action": "warn", "count": -5},
        "not a hit",
    ]
    assert guardrail_hits_clean(hits) == [
        {"rule": "pii-email", "action": "mask", "count": 2},
        {"rule": "big", "action": "log", "count": MAX_TOKENS},
        {"rule": "neg", "action": "warn", "count": 0},
    ]
    assert guardrail_hits_clean({"pii-email": 1}) == [] and guardrail_hits_clean(None) == []


def test_a_flood_of_hits_is_cut_and_the_event_cleaner_applies_it() -> None:
    many = [{"rule": f"r{i}", "action": "log", "count": 1} for i in range(500)]
    assert len(guardrail_hits_clean(many)) == MAX_GUARDRAIL_HITS
    event = usage_event_clean(event={"request_id": "r", "guardrail_hits": [{"rule": "A", "action": "mask"}]})
    assert event["guardrail_hits"] == []

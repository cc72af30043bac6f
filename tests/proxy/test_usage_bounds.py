"""What a client or an upstream sends can't stall the usage ledger: every stored field is cut to its
documented length and cleaned of control characters where the event is made (CONTRACT §1)."""

from __future__ import annotations

import httpx
import pytest

from billing.models import LABEL_FIELDS, UsageLabelSet, UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.usage_bounds import MAX_TOKENS, TEXT_LIMITS, usage_event_clean

from ..support import KEY, OTHER_KEY, Stack, make_account, make_key

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _chat(stack: Stack, key: str, model: str, provider: str = "openai") -> str:
    response = httpx.post(f"{stack.proxy}/proxy/{provider}/chat/completions", json={**CHAT, "model": model},
                          headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return response.headers["x-tokonomics-request-id"]


def test_hostile_provider_and_model_are_cut_and_every_account_goes_on_being_ingested(stack: Stack, plans) -> None:
    globex = make_account("globex", stack.sim, plans["starter"])
    make_key(globex, OTHER_KEY)
    denied = _chat(stack, KEY, "gpt-4o-mini", provider="p" * 80)  # 403: no such endpoint, still recorded
    long_model = _chat(stack, KEY, "m" * 300)
    nul_model = _chat(stack, KEY, "gpt-4o\x00-mini\x07")
    other = _chat(stack, OTHER_KEY, "gpt-4o-mini")
    usage_ingest(max_seconds=1)
    records = {r.request_id: r for r in UsageRecord.objects.all()}
    assert set(records) == {denied, long_model, nul_model, other}
    assert (records[denied].provider, records[denied].status_code) == ("p" * 63, 403)
    assert (records[long_model].model, records[long_model].status_code) == ("m" * 200, 400)
    assert records[nul_model].model == "gpt-4o-mini"
    # The next run goes on for every account: nothing is left to stall it.
    later = _chat(stack, OTHER_KEY, "gpt-4o-mini")
    usage_ingest(max_seconds=1)
    assert UsageRecord.objects.filter(request_id=later, account=globex).exists()


def test_event_fields_are_bounded_and_cleaned() -> None:
    tags = {f"k{n}\x00": "v\x00" + "x" * 300 for n in range(15)}
    clean = usage_event_clean(event={
        "model": "a\x00b" * 200, "tags": tags, "input_tokens": 2**70, "output_tokens": -5,
        "reasoning_tokens": "many", "latency_ms": 10**12, "status_code": 70000, "cost_usd": "1E+30",
        "feature": "\ud800f\x1b", "account_id": 3,
    })
    assert clean["model"] == ("ab" * 200)[:200]
    assert len(clean["tags"]) == 10
    assert all("\x00" not in k and "\x00" not in v and len(v) == 200 for k, v in clean["tags"].items())
    assert (clean["input_tokens"], clean["output_tokens"], clean["reasoning_tokens"]) == (MAX_TOKENS, 0, 0)
    assert (clean["latency_ms"], clean["status_code"]) == (2**31 - 1, 999)
    assert clean["cost_usd"] == "999999999.999999999"
    assert (clean["feature"], clean["account_id"]) == ("f", 3)


@pytest.mark.parametrize("name", sorted(TEXT_LIMITS))
def test_documented_lengths_are_the_columns_lengths(name: str) -> None:
    model = UsageLabelSet if name in LABEL_FIELDS else UsageRecord  # a record's labels are its label set's
    assert model._meta.get_field(name).max_length == TEXT_LIMITS[name]

"""Budget-aware downgrade through the live proxy with the official SDKs: past the budget's threshold calls are
served by the cheaper target (and say so), the record shows it with the saving, and the hard cap still denies."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest

from billing.models import Budget
from proxy.models import Route

from ..support import KEY, Stack
from ..support import ingested_record as record

MESSAGES = [{"role": "user", "content": "hi"}]


def downgrade_budget(stack: Stack, to: str, *, limit: str = "0.001", at: int = 50) -> Budget:
    return Budget.objects.create(account=stack.account, scope="account", period="month", limit_usd=Decimal(limit),
                                 hard=True, alert_at=[], on_exceed="downgrade", downgrade_to=to, downgrade_at=at)


@pytest.mark.parametrize("stream", [False, True])
def test_past_the_threshold_calls_are_downgraded_and_the_cap_still_denies(stack: Stack, stream: bool) -> None:
    downgrade_budget(stack, "gpt-4o-mini")
    client = openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY, max_retries=0, timeout=10)
    served: list[tuple[str, str]] = []
    for _ in range(12):  # gpt-4o at ~$0.0002 a call crosses 50% of $0.001 within a few calls
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=16, stream=stream,
            **({"stream_options": {"include_usage": True}} if stream else {}),
        )
        answer = raw.parse()
        model = list(answer)[0].model if stream else answer.model
        served.append((model, raw.headers.get("x-tokonomics-downgraded-from", "")))
        if served[-1][1]:
            break
    assert served[0] == ("gpt-4o", ""), served  # under the threshold: served as asked
    assert served[-1] == ("gpt-4o-mini", "gpt-4o"), served
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert (saved.model, saved.downgraded_from, saved.requested_model) == ("gpt-4o-mini", "gpt-4o", "gpt-4o")
    assert saved.routing_saved_usd is not None and saved.routing_saved_usd > 0
    assert saved.cost_usd > 0
    # Still under the cap, a call whose (downgraded) estimate would pass it is refused: the hard cap holds.
    with pytest.raises(openai.RateLimitError) as denied:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4000)
    assert denied.value.response.headers["x-tokonomics-denied-scope"] == "account_budget"


def test_a_downgrade_to_a_route_with_the_anthropic_sdk(stack: Stack) -> None:
    Route.objects.create(account=stack.account, name="claude-cheap",
                         targets=[{"endpoint": "anthropic", "model": "claude-3-5-haiku-latest"}])
    downgrade_budget(stack, "claude-cheap", limit="0.01", at=1)
    client = anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key=KEY, max_retries=0, timeout=10)
    first = client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    assert first.parse().model == "claude-sonnet-4-5"  # nothing spent yet: under 1%
    raw = client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    assert raw.headers["x-tokonomics-downgraded-from"] == "claude-sonnet-4-5"
    assert raw.parse().model == "claude-3-5-haiku-latest"
    saved = record(raw.headers["x-tokonomics-request-id"])
    assert (saved.route, saved.downgraded_from, saved.model) == ("claude-cheap", "claude-sonnet-4-5",
                                                                 "claude-3-5-haiku-latest")
    assert saved.routing_saved_usd > 0

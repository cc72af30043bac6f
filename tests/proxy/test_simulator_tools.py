"""Tool calls and structured output from the simulator, round-tripped by the official SDKs through the proxy:
a tool call, then the tool's result, then the answer in words; JSON content when asked for; streamed and not,
each metered as the simulator reported it."""

from __future__ import annotations

import json

import anthropic
import openai
import pydantic

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from proxy.simulator.tools import schema_instance

from ..support import KEY, Stack, wait_until

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                   "days": {"type": "integer"}},
    "required": ["city", "unit"],
}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                  "parameters": WEATHER}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
                                                                                      "properties": {}}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER}]
ARGUMENTS = {"city": "sample", "unit": "celsius", "days": 1}
QUESTION = {"role": "user", "content": "Is it raining in Lyon?"}


def records(count: int) -> list[UsageRecord]:
    """The records of the test's calls, once the ledger has all `count` (the proxy settles just after answering)."""
    wait_until(lambda: usage_ingest(max_seconds=1) >= 0 and UsageRecord.objects.count() >= count, 10)
    return list(UsageRecord.objects.order_by("created_at"))


def openai_client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY, max_retries=0)


def test_openai_tool_call_then_tool_result_round_trip(stack: Stack) -> None:
    client = openai_client(stack)
    first = client.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION], tools=OPENAI_TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [tool_call] = choice.message.tool_calls
    assert tool_call.function.name == "get_weather" and json.loads(tool_call.function.arguments) == ARGUMENTS
    named = client.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION], tools=OPENAI_TOOLS,
                                           tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert named.choices[0].message.tool_calls[0].function.name == "get_time"
    answer = client.chat.completions.create(model="gpt-4o-mini", tools=OPENAI_TOOLS, messages=[
        QUESTION, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": '{"rain": false}'},
    ])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    assert not answer.choices[0].message.tool_calls
    saved = records(3)
    assert [r.output_tokens for r in saved] == [first.usage.completion_tokens, named.usage.completion_tokens,
                                               answer.usage.completion_tokens]
    assert all(r.cost_usd > 0 for r in saved)


def test_openai_streamed_tool_call_arrives_as_deltas(stack: Stack) -> None:
    stream = openai_client(stack).chat.completions.create(model="gpt-4o-mini", messages=[QUESTION],
                                                          tools=OPENAI_TOOLS, stream=True)
    names, pieces, finish = [], [], None
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                names.append(delta.function.name)
                pieces.append(delta.function.arguments or "")
            finish = choice.finish_reason or finish
    assert names[0] == "get_weather" and len(pieces) > 2 and finish == "tool_calls"
    assert json.loads("".join(pieces)) == ARGUMENTS
    saved = records(1)
    assert [(r.status_code, r.operation, r.streamed) for r in saved] == [(200, "chat", True)]
    [saved] = saved
    assert saved.usage_source == "reported"
    assert saved.output_tokens == -(-len("get_weather" + json.dumps(ARGUMENTS, separators=(",", ":"))) // 4)


class Forecast(pydantic.BaseModel):
    city: str
    rain: bool
    days: list[int]


def test_openai_structured_output_parses_into_the_schema(stack: Stack) -> None:
    client = openai_client(stack)
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=[QUESTION], response_format=Forecast)
    assert parsed.choices[0].message.parsed == Forecast(city="sample", rain=True, days=[1])
    json_object = client.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION], max_tokens=5,
                                                 response_format={"type": "json_object"})
    assert json.loads(json_object.choices[0].message.content) == {"answer": "Here is a simulated answer"}
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION], stream=True,
                                            response_format={"type": "json_object"}, max_tokens=5)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == json_object.choices[0].message.content
    saved = records(3)
    assert saved[1].output_tokens == saved[2].output_tokens == json_object.usage.completion_tokens


def anthropic_client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)


def test_anthropic_tool_use_then_tool_result_round_trip(stack: Stack) -> None:
    client = anthropic_client(stack)
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=[QUESTION],
                                   tools=ANTHROPIC_TOOLS)
    assert first.stop_reason == "tool_use"
    [block] = first.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == ARGUMENTS
    answer = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, tools=ANTHROPIC_TOOLS, messages=[
        QUESTION, {"role": "assistant", "content": [block.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "No rain."}]},
    ])
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    none = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=[QUESTION],
                                  tools=ANTHROPIC_TOOLS, tool_choice={"type": "none"})
    assert none.content[0].type == "text"
    saved = records(3)
    assert [r.output_tokens for r in saved] == [first.usage.output_tokens, answer.usage.output_tokens,
                                               none.usage.output_tokens]


def test_anthropic_streamed_tool_use_arrives_as_input_json_deltas(stack: Stack) -> None:
    with anthropic_client(stack).messages.stream(model="claude-sonnet-4-5", max_tokens=256, messages=[QUESTION],
                                                 tools=ANTHROPIC_TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds
    assert final.stop_reason == "tool_use" and final.content[0].input == ARGUMENTS
    [saved] = records(1)
    assert saved.streamed and saved.output_tokens == final.usage.output_tokens > 0


def test_schema_instances_satisfy_their_schemas() -> None:
    assert schema_instance({"type": "object", "properties": {"a": {"type": ["null", "number"]},
                                                             "b": {"const": 3}, "c": {"anyOf": [{"type": "boolean"}]},
                                                             "d": {"type": "array", "items": {"type": "string"}}}}) == {
        "a": 1.5, "b": 3, "c": True, "d": ["sample"]}
    deep: dict = {"type": "object", "properties": {}}
    node = deep
    for _ in range(20):  # a schema nested past any sane depth still answers, and quickly
        child: dict = {"type": "object", "properties": {}}
        node["properties"]["x"] = child
        node = child
    assert isinstance(schema_instance(deep), dict)

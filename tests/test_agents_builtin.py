"""Built-in tools (calculator, clock, word count), the default agent, and the demo planner."""
from __future__ import annotations

import datetime
import json

import pytest

from monoai_tornado.agents import Agent, NativeAgent, Tool, calculator, current_utc_time, default_agents, word_count
from monoai_tornado.agents.builtin import MAX_EXPRESSION_CHARS, CalculatorError
from monoai_tornado.backends.base import TextDelta, ToolCall, ToolCallsRequested
from monoai_tornado.backends.demo import DemoBackend
from monoai_tornado.backends.demo_planner import answer_from_results, find_expressions, plan_calls, plan_demo_turn


@pytest.mark.parametrize(
    "expression, value",
    [
        ("12*(3+4)", 84),
        ("2 + 3 * 4", 14),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("-(3 - 5)", 2),
        ("+4", 4),
        ("1.5 * 4", 6.0),
        ("  (1+2)*(3+4)  ", 21),
        ("10 ** 300 // 10 ** 299", 10),
    ],
)
def test_calculator_computes_arithmetic(expression: str, value: float) -> None:
    result = calculator(expression)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os').system('true')", "function calls are not allowed"),
        ("x + 1", "names are not allowed (found 'x')"),
        ("(1).real", "attribute access is not allowed"),
        ("abs(-1)", "function calls are not allowed"),
        ("'a' * 3", "only numbers are allowed, not 'a'"),
        ("True + 1", "only numbers are allowed, not True"),
        ("1j * 2", "only numbers are allowed, not 1j"),
        ("[1, 2]", "unsupported syntax: List"),
        ("1 < 2", "unsupported syntax: Compare"),
        ("lambda: 1", "unsupported syntax: Lambda"),
        ("9**9**9", "the exponent 387420489 is too large (at most 10000)"),
        ("2 ** 100000", "the exponent 100000 is too large (at most 10000)"),
        ("10 ** 9999", "the result is too large"),
        ("(10 ** 3000) * (10 ** 3000)", "the result is too large"),
        ("10.0 ** 400", "the result is too large"),
        ("1e999", "the result is too large"),
        ("10 ** 3000 / 3", "the result is too large"),
        ("(-8) ** 0.5", "the result is not a real number"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("1 +", "invalid expression: invalid syntax"),
        ("   ", "the expression is empty"),
        ("1+" * 300 + "1", f"the expression is too long (at most {MAX_EXPRESSION_CHARS} characters)"),
        ("(" * 240 + "1" + ")" * 240, "invalid expression: too many nested parentheses"),
    ],
)
def test_calculator_refuses_with_a_clear_error(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError) as raised:
        calculator(expression)
    assert str(raised.value) == message


def test_clock_and_word_count() -> None:
    now = current_utc_time()
    assert now.endswith("Z") and len(now) == len("2024-05-01T12:30:00Z")
    parsed = datetime.datetime.fromisoformat(now[:-1]).replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - parsed).total_seconds()) < 5
    assert word_count("  one two\nthree\tfour ") == 4
    assert word_count("") == 0


def test_builtin_tools_have_described_schemas() -> None:
    assert isinstance(calculator, Tool)
    assert calculator.parameters == {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": 'The arithmetic expression, for example "12*(3+4)".'}},
        "required": ["expression"],
        "additionalProperties": False,
    }
    assert current_utc_time.parameters["properties"] == {}
    assert word_count.parameters["required"] == ["text"]


def test_default_agents() -> None:
    backend = DemoBackend(delay=0)
    (agent,) = default_agents(backend)
    assert isinstance(agent, Agent) and isinstance(agent, NativeAgent)
    assert agent.name == "assistant" and agent.model is backend
    assert [t["name"] for t in agent.describe()["tools"]] == ["calculator", "current_utc_time", "word_count"]
    assert agent.describe()["description"]
    assert all(summary["description"] for summary in agent.tool_summaries())


# --- the demo planner --------------------------------------------------------------------------

OFFERED = {"calculator": "expression", "current_utc_time": None}


@pytest.mark.parametrize(
    "text, expressions",
    [
        ("what is 12*(3+4)?", ["12*(3+4)"]),
        ("compute 2+2 and 3*3", ["2+2", "3*3"]),
        ("(compute 2 + 2)", ["2 + 2"]),
        ("what is -3 + 10 / 4", ["-3 + 10 / 4"]),
        ("I have 3 apples and 4 pears", []),
        ("version 3.11 is out", []),
        ("hello", []),
    ],
)
def test_find_expressions(text: str, expressions: list[str]) -> None:
    assert find_expressions(text) == expressions


def test_plan_calls_only_for_offered_tools() -> None:
    assert plan_calls("compute 2+2 and 3*3", OFFERED) == [
        ToolCall("call_1", "calculator", '{"expression": "2+2"}'),
        ToolCall("call_2", "calculator", '{"expression": "3*3"}'),
    ]
    assert plan_calls("What time is it?", OFFERED, first_id=3) == [ToolCall("call_3", "current_utc_time", "{}")]
    assert plan_calls("what is 2+2", {"current_utc_time": None}) == []
    assert plan_calls("what is 2+2", {"calculator": "expr"}) == [ToolCall("call_1", "calculator", '{"expr": "2+2"}')]
    assert plan_calls("tell me a story", OFFERED) == []


LOOKUP = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city, in degrees.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"type": "string", "enum": ["C", "F"]}}}}}


@pytest.mark.parametrize(("prompt", "arguments"), [
    ("get weather for Rome in 3 days, unit F", {"city": "Rome", "days": 3, "unit": "F"}),
    ('get_weather "Paris"', {"city": "Paris"}),
    ("what is the current weather of the city Oslo", {"city": "Oslo"}),
])
def test_plan_calls_asks_for_a_mentioned_tool_with_arguments_from_the_prompt(prompt, arguments) -> None:
    calls = plan_calls(prompt, {}, tools=[LOOKUP])
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [("get_weather", arguments)]


def test_plan_calls_leaves_unmentioned_tools_alone() -> None:
    assert plan_calls("tell me a story", {}, tools=[LOOKUP]) == []
    assert plan_calls("what is 2+2", OFFERED, tools=[LOOKUP]) == [ToolCall("call_1", "calculator", '{"expression": "2+2"}')]


def _assistant(*calls: tuple[str, str, dict]) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}} for i, n, a in calls
        ],
    }


def test_answer_from_results_uses_each_call_and_reports_errors() -> None:
    messages = [
        {"role": "user", "content": "compute 2+2 and 1/0, and the time"},
        _assistant(
            ("call_1", "calculator", {"expression": "2+2"}),
            ("call_2", "calculator", {"expression": "1/0"}),
            ("call_3", "current_utc_time", {}),
            ("call_4", "other", {}),
        ),
        {"role": "tool", "tool_call_id": "call_1", "content": "4"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: division by zero"},
        {"role": "tool", "tool_call_id": "call_3", "content": "2024-05-01T12:00:00Z"},
        {"role": "tool", "tool_call_id": "call_4", "content": "Error: unknown tool 'other'."},
    ]
    assert answer_from_results(messages) == (
        "2+2 = 4. I could not compute 1/0: division by zero. "
        "The current UTC time is 2024-05-01T12:00:00Z. The other tool failed: unknown tool 'other'."
    )


async def _turn(backend: DemoBackend, messages: list[dict], tools: list[dict]) -> list:
    return [event async for event in backend.stream(messages, tools=tools)]


async def test_demo_turns_with_tools() -> None:
    backend = DemoBackend(delay=0)
    tools = [calculator.schema(), current_utc_time.schema()]
    asked = await _turn(backend, [{"role": "user", "content": "what is 12*(3+4)?"}], tools)
    assert asked == [
        TextDelta("Let me use the calculator."),
        ToolCallsRequested((ToolCall("call_1", "calculator", '{"expression": "12*(3+4)"}'),)),
    ]
    history = [{"role": "user", "content": "what is 12*(3+4)?"}, _assistant(("call_1", "calculator", {"expression": "12*(3+4)"}))]
    answered = await _turn(backend, [*history, {"role": "tool", "tool_call_id": "call_1", "content": "84"}], tools)
    assert "".join(e.text for e in answered) == "12*(3+4) = 84."
    assert all(isinstance(e, TextDelta) for e in answered) and len(answered) > 1
    follow_up = [*history, {"role": "tool", "tool_call_id": "call_1", "content": "84"},
                 {"role": "assistant", "content": "12*(3+4) = 84."}, {"role": "user", "content": "and 2*3?"}]
    (_, again) = await _turn(backend, follow_up, tools)
    assert again == ToolCallsRequested((ToolCall("call_2", "calculator", '{"expression": "2*3"}'),))
    assert plan_demo_turn([{"role": "user", "content": "hello"}], tools) is None  # the usual answer
    plain = await _turn(backend, [{"role": "user", "content": "hello"}], tools)
    assert [e.text for e in plain] == backend.answer_pieces([{"role": "user", "content": "hello"}])

"""How the demo model behaves when it is given tools: enough planning to run the agent loop offline.

Deterministic rules, no model:

* the last message is the user's and asks for arithmetic (``what is 12*(3+4)?``) or the time
  (``what time is it?``), and a ``calculator`` or ``current_utc_time`` tool is offered: say a
  short sentence and ask for one tool call per expression (several are asked for in parallel);
* any other offered tool the prompt mentions, by name or description, is asked for with
  arguments from the prompt (:mod:`.demo_tools`: ``the price of bread`` -> ``price_of(item="bread")``);
* the last messages are tool results: answer with them (``12*(3+4) = 84.``), or say which
  call failed and why;
* anything else: the usual demo answer.

:func:`plan_demo_turn` is a pure function of the conversation and the tools: it decides, and
:class:`~monoai_tornado.backends.demo.DemoBackend` streams what it decided.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .base import Message, ToolCall, ToolSchema
from .demo_tools import mentioned_tools

CALCULATOR = "calculator"
CLOCK = "current_utc_time"

#: Runs of characters an expression is made of. A character class repeated with nothing after
#: it matches in one pass (no backtracking): the finder below is linear in the prompt's length.
_RUN_RE = re.compile(r"[\d\s.+\-*/%()]+")
#: Where an expression may start: a digit or "(", maybe after "-", not inside a word or number.
_START_RE = re.compile(r"(?<![\w.])-?[\d(]")
_CLOSER_RE = re.compile(r"[\d)]")
#: The last digit or ")" before the end (each character is tried once: linear).
_LAST_CLOSER_RE = re.compile(r"[\d)][^\d)]*\Z")
#: At most this many calculator calls per prompt, and expressions of at most this many
#: characters (the calculator's own limit): the demo's work per request stays bounded.
MAX_EXPRESSIONS = 8
MAX_EXPRESSION_CHARS = 500
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_OPERATOR_RE = re.compile(r"[-+*/%]")
_TIME_RE = re.compile(
    r"\bwhat time\b|\btime is it\b|\bcurrent (?:utc )?(?:time|date)\b|\butc time\b|\btime now\b"
    r"|\btoday'?s date\b|\bwhat day is it\b|\bwhat(?:'s| is) the (?:date|time)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DemoTurn:
    """The demo model's turn: ``text`` to say, then the tool ``calls`` to ask for (if any)."""

    text: str
    calls: tuple[ToolCall, ...] = ()


def plan_demo_turn(messages: list[Message], tools: list[ToolSchema]) -> DemoTurn | None:
    """The demo model's turn when ``tools`` are offered (see the module docstring); None when
    neither the tools nor their results have a part in it: the usual demo answer.

    >>> plan_demo_turn([{"role": "user", "content": "what is 2+2?"}], [{"function": {"name": "calculator"}}])
    DemoTurn(text='Let me use the calculator.', calls=(ToolCall(id='call_1', name='calculator', arguments='{"expression": "2+2"}'),))
    """
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return DemoTurn(answer_from_results(messages))
    if last.get("role") == "user":
        calls = plan_calls(str(last.get("content") or ""), _tool_parameters(tools),
                           first_id=_calls_so_far(messages) + 1, tools=tools)
        if calls:
            return DemoTurn(_preamble(calls), tuple(calls))
    return None


# --- asking for tools ------------------------------------------------------------------------

def plan_calls(
    prompt: str, offered: dict[str, str | None], *, first_id: int = 1, tools: Sequence[dict[str, Any]] = ()
) -> list[ToolCall]:
    """The tool calls ``prompt`` calls for, among the ``offered`` tools (name -> first parameter),
    and any other of ``tools`` (schemas) the prompt mentions (:mod:`.demo_tools`)."""
    requests: list[tuple[str, dict[str, Any]]] = []
    if CALCULATOR in offered:
        parameter = offered[CALCULATOR] or "expression"
        requests += [(CALCULATOR, {parameter: expression}) for expression in find_expressions(prompt)]
    if CLOCK in offered and _TIME_RE.search(prompt):
        requests.append((CLOCK, {}))
    requests += mentioned_tools(prompt, tools, skip=frozenset((CALCULATOR, CLOCK)))
    return [
        ToolCall(f"call_{first_id + index}", name, json.dumps(arguments))
        for index, (name, arguments) in enumerate(requests)
    ]


def find_expressions(text: str) -> list[str]:
    """The arithmetic expressions in ``text``, in order (``"compute 2+2 and 3*3"`` -> two).

    An expression starts at a digit or "(" (maybe after "-") that does not continue a word or
    a number, and ends at the last digit or ")" of its run of arithmetic characters. Linear
    in ``len(text)``; at most :data:`MAX_EXPRESSIONS`, each at most :data:`MAX_EXPRESSION_CHARS`.
    """
    found: list[str] = []
    for run in _RUN_RE.finditer(text):
        start = _START_RE.search(text, run.start(), run.end())
        if start is None:
            continue
        limit = min(run.end(), start.start() + MAX_EXPRESSION_CHARS)
        if _CLOSER_RE.search(text, limit, run.end()) is not None:
            continue  # it ends further on: too long
        closer = _LAST_CLOSER_RE.search(text, start.end(), limit)
        if closer is None:
            continue
        end = closer.start() + 1
        expression = _balanced(text[start.start():end].strip())
        if len(_NUMBER_RE.findall(expression)) >= 2 and _OPERATOR_RE.search(expression.lstrip("-")):
            found.append(expression)
            if len(found) == MAX_EXPRESSIONS:
                break
    return found


def _balanced(expression: str) -> str:
    """Drop unmatched parentheses at the ends (``"2+2)"`` from ``"(compute 2+2)"``)."""
    opened, closed = expression.count("("), expression.count(")")
    start, end = 0, len(expression)
    while end > start and expression[end - 1] == ")" and closed > opened:
        end -= 1
        closed -= 1
        while end > start and expression[end - 1].isspace():
            end -= 1
    while start < end and expression[start] == "(" and opened > closed:
        start += 1
        opened -= 1
        while start < end and expression[start].isspace():
            start += 1
    return expression[start:end]


def _preamble(calls: list[ToolCall]) -> str:
    names = {call.name for call in calls}
    if names == {CALCULATOR}:
        return "Let me use the calculator."
    if names == {CLOCK}:
        return "Let me check the clock."
    if len(names) == 1:
        return f"Let me use {next(iter(names))}."
    return "Let me use my tools."


def _tool_parameters(tools: list[dict[str, Any]]) -> dict[str, str | None]:
    """Offered tool names, each with its first parameter's name (None when it takes none)."""
    offered: dict[str, str | None] = {}
    for schema in tools:
        function = schema.get("function") or {}
        name = function.get("name")
        if isinstance(name, str):
            properties = (function.get("parameters") or {}).get("properties") or {}
            offered[name] = next(iter(properties), None)
    return offered


def _calls_so_far(messages: list[Message]) -> int:
    return sum(len(m.get("tool_calls") or ()) for m in messages if m.get("role") == "assistant")


# --- answering from tool results -------------------------------------------------------------

def answer_from_results(messages: list[Message]) -> str:
    """One sentence per trailing tool result, using the call that asked for it."""
    results: list[Message] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, message)
    asked = {
        call.get("id"): call.get("function") or {}
        for message in messages
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or ()
    }
    return " ".join(_sentence(asked.get(m.get("tool_call_id"), {}), str(m.get("content") or "")) for m in results)


def _sentence(function: dict[str, Any], content: str) -> str:
    name = function.get("name") or "the tool"
    arguments = _arguments(function.get("arguments"))
    failed = content.startswith("Error:")
    detail = (content[len("Error:"):] if failed else content).strip().rstrip(".")
    if name == CALCULATOR and arguments:
        expression = str(next(iter(arguments.values())))
        return f"I could not compute {expression}: {detail}." if failed else f"{expression} = {detail}."
    if name == CLOCK:
        return f"I could not read the clock: {detail}." if failed else f"The current UTC time is {detail}."
    return f"The {name} tool failed: {detail}." if failed else f"The {name} tool returned {detail}."


def _arguments(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

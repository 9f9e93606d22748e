"""The agent loop: a model that may call tools, step by step, every step reported.

Each turn sends the conversation and the tools' schemas to the model through
:func:`~monoai_tornado.calls.call_model`. When the model asks for tool calls they run
concurrently, each under a timeout, and their results (or errors) go back to the model as
``tool`` messages. The run ends at a turn without tool calls (the final answer) or after
``max_iterations`` model calls.

A tool's failure (it raises, times out, gets arguments that are not JSON or do not fit its
schema, or does not exist) never ends the run: it becomes a tool step with ``error`` set, and
the model is told the error so it can recover. Backend failures (:class:`BackendError`) and
cancellation propagate; cancelling the run cancels the tools still running.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable, Sequence

from ..backends.base import Backend, Message, ToolCall
from ..calls import CallOutcome, RunEvents, UsageMeter, call_model
from ..money.prices import Prices
from ..prompt_request import PromptRequest
from .base import NativeAgent
from .tools import Tool, ToolArgumentsError, ToolError, as_tool

log = logging.getLogger("monoai_tornado.agents")

Step = dict[str, Any]


class _ToolFailed(Exception):
    """Wraps an exception raised by a tool, to tell it apart from our own timeout."""


class Agent(NativeAgent):
    """A named model with tools and instructions, run once per prompt by :meth:`run`.

    >>> from monoai_tornado.backends.demo import DemoBackend
    >>> from monoai_tornado.agents.builtin import calculator
    >>> agent = Agent("math", DemoBackend(), tools=[calculator])
    >>> agent.tool_summaries()[0]["name"]
    'calculator'
    """

    def __init__(
        self,
        name: str,
        model: Backend,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        instructions: str | None = None,
        max_iterations: int = 8,
        tool_timeout: float = 30.0,
        description: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("an agent needs a non-empty name")
        if max_iterations < 1:
            raise ValueError("max_iterations must be >= 1")
        if not tool_timeout > 0:
            raise ValueError("tool_timeout must be > 0")
        self.name = name
        self.model = model
        #: What the agent's model costs (money.Prices; set by Application(prices=...)), or None.
        self.prices: Prices | None = None
        self.tools: tuple[Tool, ...] = tuple(as_tool(t) for t in tools)
        self._by_name = {t.name: t for t in self.tools}
        if len(self._by_name) != len(self.tools):
            raise ValueError(f"agent {name!r} has two tools with the same name")
        self.instructions = instructions
        self.max_iterations = max_iterations
        self.tool_timeout = tool_timeout
        self.description = description if description is not None else _first_line(instructions)
        if self.tools and not model.supports_tools:
            log.warning("agent %r has tools but backend %r does not support tools", name, model.name)

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, tools={[t.name for t in self.tools]!r})"

    def tool_summaries(self) -> list[dict[str, str]]:
        """``[{"name": ..., "description": ...}]`` for each tool, in order."""
        return [{"name": t.name, "description": t.description} for t in self.tools]

    def describe(self) -> dict[str, Any]:
        """The agent's entry in ``GET /agents``."""
        return {"name": self.name, "description": self.description, "tools": self.tool_summaries()}

    async def run(self, prompt: str | PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> dict[str, Any]:
        """Answer ``prompt`` (a text, or a request with a whole conversation), reporting text and
        steps to ``events``; returns the agent result."""
        request = prompt if isinstance(prompt, PromptRequest) else PromptRequest(prompt)
        prompt, options = request.prompt, request.call_options()
        messages: list[Message] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        messages += request.upstream_messages()
        schemas = [t.schema() for t in self.tools] or None  # the agent's own tools, never the client's
        iterations: list[Step] = []
        call_ids: set[str] = set()

        async def record(step: Step) -> None:
            iterations.append(step)
            await events.on_step(step)

        last_text = ""
        for turn in range(1, self.max_iterations + 1):
            known = meter.admitted_prompt_tokens if len(messages) == 1 else None  # the prompt alone
            outcome = await call_model(self.model, messages, meter=meter, on_text=events.on_text, tools=schemas,
                                       options=options, prompt_tokens=known)
            if outcome.finish_reason == "length" and not outcome.usage.total_tokens:
                break  # the run's cap was used up: no call was made
            calls = _unique_ids(outcome.tool_calls, turn, call_ids)
            await record(_model_step(outcome, calls))
            messages.append(_assistant_message(outcome.text, calls))
            last_text = outcome.text or last_text
            if not calls:  # the final answer, or the run's cap reached
                return self._result(prompt, outcome.text, iterations, meter)
            if turn == self.max_iterations:
                break  # nobody would read these tools' results
            for step in await self._run_tools(calls, events, record):
                content = step["output"] if step["error"] is None else f"Error: {step['error']}"
                messages.append({"role": "tool", "tool_call_id": step["id"], "content": _as_text(content)})
        if meter.capped:
            return self._result(prompt, last_text, iterations, meter)
        response = last_text or (
            f"The agent stopped after {self.max_iterations} model calls without a final answer."
        )
        return {**self._result(prompt, response, iterations, meter), "stopped": "max_iterations"}

    @staticmethod
    def _result(prompt: str, response: str, iterations: list[Step], meter: UsageMeter) -> dict[str, Any]:
        return {"prompt": prompt, "response": response, "iterations": iterations, "usage": meter.finished.to_dict(),
                "finish_reason": meter.finish_reason}

    async def _run_tools(
        self, calls: Sequence[ToolCall], events: RunEvents, record: Callable[[Step], Any]
    ) -> list[Step]:
        """Run ``calls`` concurrently; record their steps in the calls' order as they finish."""
        tasks: list[asyncio.Future[Step]] = []
        try:
            for call in calls:
                arguments, tool, error = self._prepare(call)
                if tool is None or error is not None:
                    tasks.append(_done_task(_tool_step(call, arguments, None, error, 0.0)))
                    continue
                await events.on_step({"type": "tool_started", "id": call.id, "name": call.name, "arguments": arguments})
                tasks.append(asyncio.create_task(self._execute(call, tool, arguments)))
            steps = []
            for task in tasks:
                step = await task
                steps.append(step)
                await record(step)
            return steps
        finally:
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _prepare(self, call: ToolCall) -> tuple[Any, Tool | None, str | None]:
        """Parsed arguments, the tool, and an error message when the call cannot run."""
        arguments: Any = call.arguments
        not_json: str | None = None
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except (json.JSONDecodeError, TypeError) as exc:
            not_json = f"arguments are not valid JSON ({exc})"
        tool = self._by_name.get(call.name)
        if tool is None:
            available = ", ".join(self._by_name) or "none"
            return arguments, None, f"unknown tool {call.name!r} (available tools: {available})"
        if not_json is not None:
            return arguments, None, not_json
        try:
            tool.validate(arguments)
        except ToolArgumentsError as exc:
            return arguments, None, f"invalid arguments for tool {call.name!r}: {exc}"
        return arguments, tool, None

    async def _execute(self, call: ToolCall, tool: Tool, arguments: dict[str, Any]) -> Step:
        """Run one tool under the timeout; its failures become the step's ``error``."""
        started = time.perf_counter()
        output: Any = None
        error: str | None = None
        try:
            output = await asyncio.wait_for(_invoke(tool, arguments), self.tool_timeout)
        except _ToolFailed as failed:
            error = _describe(failed.__cause__)
        except asyncio.TimeoutError:
            error = f"tool {tool.name!r} timed out after {self.tool_timeout:g} s"
            log.info("agent %r: %s", self.name, error)
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return _tool_step(call, arguments, _jsonable(output), error, duration_ms)


async def _invoke(tool: Tool, arguments: dict[str, Any]) -> Any:
    try:
        return await tool.invoke(arguments)
    except Exception as exc:  # CancelledError is a BaseException and passes through
        if not isinstance(exc, ToolError):
            log.warning("tool %r raised", tool.name, exc_info=True)
        raise _ToolFailed() from exc


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, ToolError):
        return str(exc) or type(exc).__name__
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _done_task(step: Step) -> "asyncio.Future[Step]":
    future: asyncio.Future[Step] = asyncio.get_running_loop().create_future()
    future.set_result(step)
    return future


def _tool_step(call: ToolCall, arguments: Any, output: Any, error: str | None, duration_ms: float) -> Step:
    return {
        "type": "tool",
        "id": call.id,
        "name": call.name,
        "arguments": arguments,
        "output": output,
        "error": error,
        "duration_ms": duration_ms,
    }


def _model_step(outcome: CallOutcome, calls: Sequence[ToolCall]) -> Step:
    return {
        "type": "model",
        "content": outcome.text,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": _parsed(c.arguments)} for c in calls],
        "usage": outcome.usage.to_dict(),
    }


def _assistant_message(text: str, calls: Sequence[ToolCall]) -> Message:
    """The model's turn as the next request repeats it.

    ``content`` is always a string, ``""`` for a turn of tool calls alone: OpenAI also takes
    ``null`` there, but llama.cpp's server (and other strict schemas) refuse it.
    """
    if not calls:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": text, "tool_calls": [c.to_openai() for c in calls]}


def _unique_ids(calls: Sequence[ToolCall], turn: int, seen: set[str]) -> tuple[ToolCall, ...]:
    """The calls, with an id made up for any that has none or repeats one ``seen`` in the run.

    Some servers send no ids, or number them afresh each turn; tool results must match one call.
    """
    fixed = []
    for index, call in enumerate(calls, 1):
        if not call.id or call.id in seen:
            call = ToolCall(f"call_{turn}_{index}", call.name, call.arguments)
        seen.add(call.id)
        fixed.append(call)
    return tuple(fixed)


def _parsed(arguments: str) -> Any:
    """The JSON value of ``arguments``, or the raw text when it is not JSON."""
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except (json.JSONDecodeError, TypeError):
        return arguments


def _jsonable(value: Any) -> Any:
    """``value`` when it can be sent as JSON, else ``str(value)``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return str(value)
    return value


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0].strip()

"""Serve MonoAI-style agents: anything with ``run(prompt)`` returning a dict, like MonoAI's ``Agent``.

:class:`MonoAIAgentAdapter` makes such an object a :class:`~monoai_tornado.agents.base.NativeAgent`.
It calls the object as :mod:`monoai_tornado.backends.monoai_adapter` calls a MonoAI ``Model``
(``enable_streaming`` and a thread pool, or an ``async def run``; one lock per object), and
shapes its answer as the agent result of API.md.

>>> class Researcher:
...     '''Finds things out.'''
...     name = "researcher"
...     def run(self, prompt): return {"response": prompt, "iterations": []}
>>> adapt_agent(Researcher()).describe()
{'name': 'researcher', 'description': 'Finds things out.', 'tools': []}
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import inspect
from typing import Any, Mapping

from ..backends.base import Message
from ..backends.monoai_adapter import CallResult, lock_for, response_and_usage, str_attr, stream_call
from ..calls import RunEvents, UsageMeter
from ..prompt_request import PromptRequest
from .base import NativeAgent


class MonoAIAgentAdapter(NativeAgent):
    """An agent over an object with ``run(prompt)`` (sync or async) returning a dict.

    Its ``iterations`` are passed through as the object reports them; the usage is the
    object's own when it reports one, else counted with the run's meter.
    """

    def __init__(self, name: str, obj: Any, *, description: str | None = None, timeout: float | None = None,
                 executor: concurrent.futures.Executor | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("an agent needs a non-empty name")
        if not callable(getattr(obj, "run", None)):
            raise TypeError(f"{type(obj).__name__} has no run(prompt) method")
        self.name = name
        self.obj = obj
        self.description = description if description is not None else _doc_of(obj)
        self.timeout = timeout
        self.executor = executor
        self._lock = lock_for(obj)

    def __repr__(self) -> str:
        return f"MonoAIAgentAdapter({self.name!r}, {type(self.obj).__name__})"

    def tool_summaries(self) -> list[dict[str, str]]:
        """The object's tools: a MonoAI Agent's registered ones, else its ``tools`` attribute."""
        return _tools_of(self.obj)

    def describe(self) -> dict[str, Any]:
        """The agent's entry in ``GET /agents``."""
        return {"name": self.name, "description": self.description, "tools": self.tool_summaries()}

    def model(self) -> dict[str, str] | None:
        """``{"provider", "name"}`` of the model the object runs on, when it tells."""
        model = getattr(self.obj, "_model", None) or getattr(self.obj, "model", None)
        name = model if isinstance(model, str) else str_attr(model, "model", "model_name", "name")
        if not name:
            return None
        return {"provider": str_attr(model, "provider", "_provider") or "monoai", "name": name}

    async def run(self, prompt: str | PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> dict[str, Any]:
        """Run the object on ``prompt``, streaming its chunks to ``events.on_text``.

        The object takes one prompt string: a conversation of several messages (``/v1``) is
        given to it as a transcript, one ``role: content`` line per message.
        """
        request = prompt if isinstance(prompt, PromptRequest) else PromptRequest(prompt)
        messages = request.upstream_messages()
        asked = request.prompt if len(messages) == 1 else _transcript(messages)
        meter.begin([{"role": "user", "content": asked}], meter.admitted_prompt_tokens if len(messages) == 1 else None)
        parts: list[str] = []
        returned = CallResult()
        call = stream_call(self.obj, "run", asked, returned, kind="agent", name=self.name, lock=self._lock,
                           executor=self.executor, timeout=self.timeout)
        async with contextlib.aclosing(call):
            async for text in call:
                parts.append(text)
                capped = meter.add_text(text)
                await events.on_text(text)
                if capped:  # the run's cap: stop the object's run here
                    break
        result = returned.value
        if meter.capped:
            result = {"response": "".join(parts)}
        if isinstance(result, dict) and not isinstance(result.get("response"), str) and parts:
            result = {**result, "response": "".join(parts)}
        response, reported = response_and_usage(result, "agent", self.name, "run")
        if not parts and response:
            meter.add_text(response)
            await events.on_text(response)
        meter.end(reported)
        iterations = result.get("iterations") if isinstance(result, dict) else None
        answer = {"prompt": request.prompt, "response": response,
                  "iterations": iterations if isinstance(iterations, list) else [],
                  "usage": meter.finished.to_dict(), "finish_reason": meter.finish_reason}
        model = self.model()
        if model is not None:
            answer["model"] = model
        return answer


def adapt_agent(obj: Any, name: str | None = None) -> NativeAgent:
    """``obj`` as an agent: a :class:`NativeAgent` as is, an object with ``run()`` wrapped.

    A wrapped object is named ``name``, else by its ``name`` attribute.
    """
    if isinstance(obj, NativeAgent):
        return obj
    if callable(getattr(obj, "run", None)):
        agent_name = name or getattr(obj, "name", None)
        if not isinstance(agent_name, str) or not agent_name.strip():
            raise TypeError(
                f"the {type(obj).__name__} agent has no name: give it a `name` attribute "
                "or pass the agents as a mapping {name: agent}"
            )
        return MonoAIAgentAdapter(agent_name, obj)
    raise TypeError(
        f"cannot serve a {type(obj).__name__} as an agent: expected a monoai_tornado Agent "
        "or an object with run(prompt) returning a dict, like MonoAI's Agent"
    )


def _transcript(messages: list[Message]) -> str:
    return "\n".join(f"{message['role']}: {message.get('content') or ''}" for message in messages)


def _tools_of(obj: Any) -> list[dict[str, str]]:
    """Name and description of each tool of a MonoAI ``Agent`` (``_loop._tools``) or look-alike."""
    tools = getattr(getattr(obj, "_loop", None), "_tools", None)
    if tools is None:
        tools = getattr(obj, "tools", None)
    if isinstance(tools, Mapping):
        named = list(tools.items())
    elif isinstance(tools, (list, tuple)):
        named = [(getattr(tool, "__name__", None) or getattr(tool, "name", None), tool) for tool in tools]
    else:
        return []
    summaries = []
    for name, tool in named:
        if isinstance(name, str) and name:
            description = getattr(tool, "description", None)
            if not isinstance(description, str):
                description = " ".join(inspect.cleandoc(tool.__doc__ or "").split("\n\n")[0].split())
            summaries.append({"name": name, "description": description})
    return summaries


def _doc_of(obj: Any) -> str:
    """The first paragraph of the object's own class docstring (never an inherited one)."""
    doc = getattr(obj, "description", None)
    if isinstance(doc, str):
        return doc
    doc = type(obj).__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())

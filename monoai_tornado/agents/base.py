"""What the server runs as an agent: a :class:`NativeAgent`.

The loop agent (:class:`~monoai_tornado.agents.agent.Agent`) and the adapter of MonoAI-style
objects (:class:`~monoai_tornado.agents.monoai_adapter.MonoAIAgentAdapter`) are native agents;
so is any class of your own that derives from it. Anything else given as an agent is wrapped
by the adapter, so the check is ``isinstance``, never a marker attribute.
"""
from __future__ import annotations

import abc
from typing import Any

from ..calls import RunEvents, UsageMeter
from ..prompt_request import PromptRequest


class NativeAgent(abc.ABC):
    """An agent the server runs as it is: a :attr:`name`, :meth:`run` and :meth:`describe`.

    >>> class Echo(NativeAgent):
    ...     name = "echo"
    ...     async def run(self, request, /, *, meter, events):
    ...         return {"prompt": request.prompt, "response": request.prompt, "iterations": []}
    >>> Echo().describe()
    {'name': 'echo', 'description': '', 'tools': []}
    """

    name: str

    @abc.abstractmethod
    async def run(self, request: PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> dict[str, Any]:
        """Answer ``request``, reporting text and steps to ``events`` and tokens to ``meter``;
        returns the agent result of API.md."""

    def describe(self) -> dict[str, Any]:
        """The agent's entry in ``GET /agents`` (this default lists no description and no tools)."""
        return {"name": self.name, "description": "", "tools": []}

"""What a run tells its transport about routing: the deployment chosen (for the
``X-MonoAI-Deployment`` header, before the first byte) and the model and deployment that answered.

The handler sets a :class:`RouteNote` in :data:`ROUTE_NOTE` before it starts the run's task;
the task sees it (a copy of the handler's context), the routed backend writes to it.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable


@dataclass(slots=True)
class RouteNote:
    """``on_chosen(header_value)`` is called for every attempt, before it sends anything, with the
    chosen deployment's id as a header carries it (``Deployment.header_value``)."""

    on_chosen: Callable[[str], None] | None = None
    #: ``on_answer(model_name)``: called once the answer's first event came, with who answers.
    on_answer: Callable[[str], None] | None = None
    #: The deployment whose answer the client got, and its model name and provider.
    deployment: str | None = None
    model: str | None = None
    provider: str | None = None
    attempts: int = 0

    def answering(self, deployment: str, model: str, provider: str) -> None:
        """The deployment ``deployment`` of ``model`` sent the answer's first event."""
        self.deployment, self.model, self.provider = deployment, model, provider
        if self.on_answer is not None:
            self.on_answer(model)

    def chosen(self, header_value: str) -> None:
        self.attempts += 1
        if self.on_chosen is not None:
            self.on_chosen(header_value)


ROUTE_NOTE: ContextVar[RouteNote | None] = ContextVar("monoai_route_note", default=None)

#: The header naming the deployment that serves an answer.
DEPLOYMENT_HEADER = "X-MonoAI-Deployment"

"""What every handler needs, built once by :class:`~monoai_tornado.app.Application`.

Handlers receive it through ``initialize(context=...)`` in their URL spec, never through
module globals, so several apps (or one mounted under a prefix) can live in one process.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .agents.base import NativeAgent
from .dialects.responses_store import MemoryResponseStore, ResponseStore
from .errors import NotFound
from .keys import KeyRing
from .lifecycle import Lifecycle
from .pipeline import Pipeline
from .targets import AgentTarget, ModelTarget, Target
from .ratelimit import Limiter

if TYPE_CHECKING:
    from .routing import Gateway

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
DEFAULT_MAX_WS_MESSAGE_SIZE = 1024 * 1024


@dataclass
class ServerContext:
    """Configuration and shared state of one served application."""

    name: str
    pipeline: Pipeline
    model: ModelTarget | None = None
    agents: dict[str, NativeAgent] = field(default_factory=dict)
    cors_origins: tuple[str, ...] = ("*",)
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    max_ws_message_size: int = DEFAULT_MAX_WS_MESSAGE_SIZE
    admin_token: str | None = None
    sse_keepalive_interval: float = 15.0
    #: ``"METHOD /path"`` of every endpoint served (``GET /`` lists them).
    endpoints: tuple[str, ...] = ()
    #: ``(path, operationId)`` of every HTTP operation served (``GET /openapi.json``'s paths).
    operations: tuple[tuple[str, str], ...] = ()
    #: Seconds an SSE answer's headers wait for its first event (a failure before: a real status).
    sse_header_hold: float = 1.0
    #: Several models (``--config`` with ``[[models]]``): prompts choose one by ``model``.
    gateway: Gateway | None = None
    #: Stored responses of the Responses front (``previous_response_id``, GET, DELETE).
    responses: ResponseStore = field(default_factory=MemoryResponseStore)
    started_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
    )
    _agent_targets: dict[str, AgentTarget] = field(default_factory=dict, init=False, repr=False)

    @property
    def lifecycle(self) -> Lifecycle:
        """What is in flight (prompts, runs, WebSockets), and how it ends."""
        return self.pipeline.lifecycle

    @property
    def limiter(self) -> Limiter | None:
        return self.pipeline.limiter

    @property
    def keys(self) -> KeyRing | None:
        """The API key checker, when a key store is configured."""
        return self.pipeline.identity.keys

    def target(self, agent_name: str | None) -> Target:
        """The model (``agent_name`` None) or the named agent; 404 for an unknown agent."""
        if agent_name is None:
            if self.model is None:
                raise NotFound("No model is configured")
            return self.model
        agent = self.agent_target(agent_name)
        if agent is None:
            raise NotFound(f"Agent '{agent_name}' not found")
        return agent

    def agent_target(self, name: str) -> AgentTarget | None:
        """The agent ``name`` as a run target, or None when there is no such agent."""
        target = self._agent_targets.get(name)
        if target is None and name in self.agents:
            target = self._agent_targets[name] = AgentTarget(self.agents[name])
        return target

    def model_target(self, name: str | None) -> Target:
        """The model a prompt names (None: the default one); 404 ``model_not_found`` for an
        unknown one under a gateway. With one model, ``name`` is not looked at (Part 1)."""
        if self.gateway is not None:
            return self.gateway.target(name)
        return self.target(None)

    def origin_allowed(self, origin: str | None) -> bool:
        return "*" in self.cors_origins or (origin is not None and origin in self.cors_origins)

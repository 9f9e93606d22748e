"""What a prompt runs on: a model (:class:`ModelTarget`) or an agent (:class:`AgentTarget`),
both answering with one :class:`~monoai_tornado.conversation.RunResult`."""
from __future__ import annotations

from typing import Protocol

from .agents.base import NativeAgent
from .backends.base import Backend
from .calls import CallOutcome, RunEvents, SilentEvents, UsageMeter, call_model, texts_callback
from .conversation import ModelInfo, RunResult
from .money.prices import Prices
from .prompt_request import PromptRequest


class Target(Protocol):
    """Something a prompt runs on: the model, or an agent."""

    name: str

    async def run(self, request: PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> RunResult:
        ...


def prices_of(target: Target) -> Prices | None:
    """A target's prices (``target.prices``: a priced model, an agent on one), None when unpriced."""
    prices = getattr(target, "prices", None)
    return prices if isinstance(prices, Prices) else None


def model_name(target: Target, result: RunResult | None = None) -> str:
    """The model a ledger line names: the one that answered (a fallback's own name), else the
    backend's model, ``agent/NAME`` for an agent."""
    if result is not None and result.model is not None and not isinstance(target, AgentTarget):
        return result.model.name
    backend = getattr(target, "backend", None)
    if isinstance(backend, Backend):
        return str(backend.describe().get("name") or target.name)
    return f"agent/{target.name}"


class ModelTarget:
    """Runs a prompt (or a whole conversation) on a backend.

    When the backend asked for tool calls (only when the request offered tools), the result
    carries them, with ``finish_reason: "tool_calls"``.
    ``prices``: what the model costs (None: unpriced, no ``cost_usd``, refused under a spend limit).
    """

    def __init__(self, backend: Backend, prices: Prices | None = None) -> None:
        self.backend = backend
        self.name = backend.name
        described = backend.describe()
        self.info = ModelInfo(described["provider"], described["name"])
        self._prices = prices

    @property
    def prices(self) -> Prices | None:
        """What admission reserves the run's cost with (None: unpriced)."""
        return self._prices

    def deployment_prices(self, deployment: str) -> Prices | None:
        """What the deployment that answered bills (a routed model's own; here the model's)."""
        return self._prices

    async def run(self, request: PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> RunResult:
        outcome = await self.call(request, meter=meter, events=events)
        return self.result(request, outcome, self.info)

    async def call(self, request: PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> CallOutcome:
        """The backend's answer to ``request``, metered by ``meter``."""
        silent = isinstance(events, SilentEvents)
        return await call_model(self.backend, request.upstream_messages(), meter=meter,
                                on_text=None if silent else events.on_text, tools=request.tool_schemas(),
                                options=request.call_options(), prompt_tokens=meter.admitted_prompt_tokens,
                                on_texts=None if silent else texts_callback(events))

    @staticmethod
    def result(request: PromptRequest, outcome: CallOutcome, model: ModelInfo,
               deployment: str | None = None) -> RunResult:
        """The run's result: ``outcome`` as answered by ``model`` (on ``deployment``)."""
        return RunResult(request.prompt, outcome.text, outcome.usage, outcome.finish_reason, model,
                         tool_calls=outcome.tool_calls, deployment=deployment, stop_sequence=outcome.stop_sequence)


class AgentTarget:
    """Runs a prompt on an agent: its Part 1 result dict becomes a :class:`RunResult`, the
    fields beyond prompt, response and usage kept in ``extra``."""

    #: Keys of an agent's result that the :class:`RunResult` holds itself.
    OWN_KEYS = frozenset({"prompt", "response", "usage", "finish_reason", "model", "tool_calls"})

    def __init__(self, agent: NativeAgent) -> None:
        self.agent = agent
        self.name = agent.name
        #: The agent's model's prices (``Application(prices=...)`` sets them on agents of its model).
        self.prices: Prices | None = getattr(agent, "prices", None)

    async def run(self, request: PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> RunResult:
        result = await self.agent.run(request, meter=meter, events=events)
        model = result.get("model")
        info = ModelInfo(str(model.get("provider", "")), str(model.get("name", ""))) \
            if isinstance(model, dict) else None
        reason = result.get("finish_reason")
        return RunResult(str(result.get("prompt", request.prompt)), str(result.get("response", "")), meter.finished,
                         reason if isinstance(reason, str) else meter.finish_reason, info,
                         extra={key: value for key, value in result.items() if key not in self.OWN_KEYS})

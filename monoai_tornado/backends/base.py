"""The backend protocol: one async method that streams events for a chat conversation.

A backend turns a list of OpenAI-style chat messages (and optionally tool schemas) into an
async stream of events:

* :class:`TextDelta` - a piece of the answer text, in order;
* :class:`TextDeltas` - several pieces that are ready at once (each still its own chunk for
  the client), so that a fast backend pays one step of its stream rather than one per piece;
* :class:`ToolCallsRequested` - the model asks for tool calls instead of (or after) text;
* :class:`ReportedUsage` - token counts, when the backend knows them (usually last);
* :class:`PromptTokens` - the prompt's tokens alone, counted by the upstream when it reported
  no usage (the completion is then counted locally);
* :class:`FinishReason` - why the model ended its answer, when it says (it wins over ours).

Failures are raised as :class:`~monoai_tornado.errors.BackendError` (502) or
:class:`~monoai_tornado.errors.BackendTimeout` (504). Cancelling the task that iterates the
stream must stop the backend's work (close the upstream request, stop the thread's output).
State of one call lives in the generator, never on the backend object, so concurrent calls on
one backend never mix.
"""
from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncGenerator, Mapping, Union

from ..conversation import ToolCall as ToolCall  # re-exported: backends and users import it from here
from ..conversation import ToolChoice

Message = dict[str, Any]
"""An OpenAI chat message: ``{"role": "user", "content": "..."}`` and friends."""

ToolSchema = dict[str, Any]
"""An OpenAI tool: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""


# The events a backend's stream yields:


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer text."""

    text: str


@dataclass(frozen=True)
class TextDeltas:
    """Several pieces of the answer text, in order, handed over in one step."""

    texts: tuple[str, ...]


@dataclass(frozen=True)
class ToolCallsRequested:
    """The model asks for these tool calls to be run."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class ReportedUsage:
    """Token counts reported by the backend itself; ``cached_tokens`` of the prompt's tokens
    came from the upstream's cache (billed at the cached price)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    #: The field names a reported usage may carry: OpenAI's, then Anthropic's.
    FIELDS = (("prompt_tokens", "completion_tokens"), ("input_tokens", "output_tokens"))

    @classmethod
    def of(cls, usage: Any) -> ReportedUsage | None:
        """The counts of a usage object as an upstream reports it; None when absent or partial.

        >>> ReportedUsage.of({"prompt_tokens": 3, "completion_tokens": 1})
        ReportedUsage(prompt_tokens=3, completion_tokens=1, cached_tokens=0)
        >>> ReportedUsage.of({"input_tokens": 3, "output_tokens": 1}), ReportedUsage.of({"prompt_tokens": 3})
        (ReportedUsage(prompt_tokens=3, completion_tokens=1, cached_tokens=0), None)
        >>> ReportedUsage.of({"prompt_tokens": 9, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 8}})
        ReportedUsage(prompt_tokens=9, completion_tokens=1, cached_tokens=8)
        """
        if not _is_mapping(usage):
            return None
        for prompt_key, completion_key in cls.FIELDS:
            prompt, completion = usage.get(prompt_key), usage.get(completion_key)
            if isinstance(prompt, int) and isinstance(completion, int) and prompt >= 0 and completion >= 0:
                details = usage.get("prompt_tokens_details")
                cached = details.get("cached_tokens") if _is_mapping(details) else None
                if not isinstance(cached, int) or isinstance(cached, bool):
                    cached = 0
                return cls(prompt, completion, min(max(0, cached), prompt))
        return None


def _is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, a dict or None answered without typing's slow check."""
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


@dataclass(frozen=True)
class PromptTokens:
    """The prompt's tokens as the upstream counted them, for an answer that reported no usage."""

    tokens: int


@dataclass(frozen=True)
class FinishReason:
    """Why the model itself ended its answer (``"stop"``, ``"length"``, ...), when it says so;
    ``stop_sequence``: which of the request's stop sequences ended it, when the upstream names it."""

    reason: str
    stop_sequence: str | None = None


BackendEvent = Union[TextDelta, TextDeltas, ToolCallsRequested, ReportedUsage, PromptTokens, FinishReason]

EventStream = AsyncGenerator[BackendEvent, None]
"""What :meth:`Backend.stream` returns: an async generator of :data:`BackendEvent` objects."""


@dataclass(frozen=True)
class CallOptions:
    """Generation options of one model call, named as OpenAI names them.

    ``None`` (or empty) leaves the backend's own default. ``max_tokens`` is the run's
    completion cap; ``extra`` holds further request fields for an upstream that takes them.
    A backend honours what it can and ignores the rest.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tool_choice: ToolChoice | None = None
    #: Top-k sampling (Anthropic clients send it; passed upstream as is).
    top_k: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Whether the caller reads the answer as it comes; False: only the whole answer is used, and
    #: a backend may ask for it whole (``OpenAIBackend(upstream_stream="as-client")``).
    stream: bool = True


class Backend(abc.ABC):
    """Base class of model backends.

    Subclasses set :attr:`provider` and :attr:`name` and implement :meth:`stream`::

        class Echo(Backend):
            provider, name = "echo", "echo-1"

            async def stream(self, messages, *, tools=None, options=None):
                yield TextDelta(messages[-1]["content"])
    """

    provider: str = "unknown"
    name: str = "unknown"
    #: Model name used to pick a tiktoken encoding when the backend reports no usage.
    encoding_model: str | None = None
    #: Whether the backend can be given ``tools`` and answer with tool calls.
    supports_tools: bool = False

    @abc.abstractmethod
    def stream(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
               options: CallOptions | None = None) -> EventStream:
        """Stream the answer to ``messages`` as :data:`BackendEvent` objects.

        An async generator: the caller closes it (``contextlib.aclosing``) to stop the call.

        ``options`` is given only when the call has any (older backends may omit the keyword).
        """

    def describe(self) -> dict[str, str]:
        """The ``model`` object of a model result: ``{"provider": ..., "name": ...}``."""
        return {"provider": self.provider, "name": self.name}

    async def aclose(self) -> None:
        """Release resources (HTTP clients, thread pools) at shutdown."""

    async def unreachable(self) -> str | None:
        """Why the model cannot be reached now (an upstream down), or None (``/health``)."""
        return None

    async def count_prompt(self, messages: list[Message], tools: list[ToolSchema] | None = None,
                           options: CallOptions | None = None) -> int | None:
        """The prompt's tokens as the model counts them, for an answer cut short before it
        reported usage; None when the backend cannot tell (they are then estimated)."""
        return None



def exception_of(future: asyncio.Future[Any]) -> BaseException | None:
    """The exception a finished ``future`` ended with (None for a result or a cancel), marked as
    retrieved: what a backend calls on work it abandoned (an aborted request, a call left to its
    thread), so that asyncio does not log it as never retrieved. Usable as a done callback."""
    return None if future.cancelled() else future.exception()

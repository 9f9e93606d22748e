"""The one internal conversation model: what every dialect parses into and renders out of.

A request in any dialect (Part 1's prompt body, OpenAI chat completions, Anthropic messages,
OpenAI responses) becomes a :class:`~monoai_tornado.prompt_request.PromptRequest` holding these
typed parts; a run, whatever answered it, ends as one :class:`RunResult`. Translating between
dialects is a property of these types (``to_openai()`` gives the upstream's chat shape), never
of a route.

>>> call = ToolCall("call_1", "add", '{"a": 1}')
>>> Message("assistant", tool_calls=(call,)).to_openai()["tool_calls"][0]["function"]["name"]
'add'
>>> ToolChoice("function", "add").to_openai()
{'type': 'function', 'function': {'name': 'add'}}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from .usage import Usage

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]

#: The parameters of a tool that declares none: an object with no properties.
NO_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asks for; ``arguments`` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        """The call as an OpenAI ``tool_calls`` entry."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Message:
    """One turn of a conversation.

    ``text`` is the turn's text ("" when it has none); an assistant turn may ask for
    ``tool_calls``; a ``tool`` turn answers the call ``tool_call_id`` with its ``text``.
    """

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The turn as an OpenAI chat message (what upstreams and token counting read)."""
        message: dict[str, Any] = {"role": self.role, "content": self.text}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls:
            message["content"] = self.text or None
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


@dataclass(frozen=True)
class ToolDefinition:
    """A function the model may call: its name, what it does, and its JSON Schema parameters."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(NO_PARAMETERS))

    def to_openai(self) -> dict[str, Any]:
        """The tool as an OpenAI ``tools`` entry."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description is not None:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """Whether and which tool the model must call: ``auto``, ``none``, ``required`` (any), or
    the ``function`` named ``name``."""

    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None

    def to_openai(self) -> str | dict[str, Any]:
        """OpenAI's ``tool_choice``: a mode string, or the named function."""
        if self.mode == "function":
            return {"type": "function", "function": {"name": self.name}}
        return self.mode


@dataclass(frozen=True)
class ModelInfo:
    """Who answered: the provider and the model name (the fallback's name when a fallback did)."""

    provider: str
    name: str

    def to_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "name": self.name}


@dataclass
class RunResult:
    """How a run ended: what every dialect renders its answer from.

    ``extra`` carries what an agent adds to Part 1's result (``iterations``, ``stopped``, or
    a user agent's own fields), rendered as they are.
    """

    prompt: str
    text: str
    usage: Usage
    finish_reason: str = "stop"
    model: ModelInfo | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    #: The deployment that answered, when the model has several (routing).
    deployment: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The stop sequence the answer ended on, when the upstream said which (vLLM's ``stop_reason``).
    stop_sequence: str | None = None

    def to_result_dict(self) -> dict[str, Any]:
        """Part 1's model (or agent) result: ``{"prompt", "response", "model"?, "usage", ...}``."""
        result: dict[str, Any] = {"prompt": self.prompt, "response": self.text}
        if self.model is not None:
            result["model"] = self.model.to_dict()
        result.update(self.extra)
        result["usage"] = self.usage.to_dict()
        result["finish_reason"] = self.finish_reason
        if self.tool_calls:
            result["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        return result

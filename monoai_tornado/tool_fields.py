"""One tool definition from a dialect's fields, checked the same way on every front; each
front names its own fields in its own error messages."""

from __future__ import annotations

from typing import Any, Literal

from .conversation import ToolChoice, ToolDefinition
from .errors import InvalidJson

ToolField = Literal["name", "description", "parameters"]


class BadToolField(Exception):
    """The first field of a tool that is wrong: ``name``, ``description`` or ``parameters``."""

    def __init__(self, field: ToolField) -> None:
        super().__init__(field)
        self.field: ToolField = field


def tool_entries(body: dict[str, Any], refusal: str) -> list[Any]:
    """The body's ``tools`` list, empty when absent; ``refusal`` (an invalid_json) when it is no list."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidJson(refusal)
    return tools


def tool_definition(name: object, description: object, parameters: object) -> ToolDefinition:
    """A tool from a non-empty ``name``, an optional string ``description`` and an optional JSON
    Schema object ``parameters`` (missing: no parameters); else :class:`BadToolField`."""
    if not isinstance(name, str) or not name:
        raise BadToolField("name")
    if description is not None and not isinstance(description, str):
        raise BadToolField("description")
    if parameters is None:
        return ToolDefinition(name, description)
    if not isinstance(parameters, dict):
        raise BadToolField("parameters")
    return ToolDefinition(name, description, parameters)


def with_tools(choice: ToolChoice, tools: tuple[ToolDefinition, ...]) -> ToolChoice:
    """``choice``, refused when it asks for a tool call and the request offers no tools."""
    if not tools and choice.mode != "none":
        raise InvalidJson("tool_choice needs tools")
    return choice

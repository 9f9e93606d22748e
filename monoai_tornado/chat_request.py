"""Parsing of ``POST /v1/chat/completions`` bodies into a :class:`PromptRequest` (API.md Part 2).

Every malformed field is a 400: ``messages`` absent, empty or not a list is ``missing_prompt``
(as a missing ``prompt`` is on our own routes); any other field of the wrong type or out of
range is ``invalid_json``. Unknown fields are ignored.

>>> chat = parse_chat_object({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
>>> chat.model, chat.request.prompt, chat.stream
('m', 'hi', False)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .conversation import Message, Role, ToolCall, ToolChoice, ToolDefinition
from .errors import InvalidJson, MissingPrompt
from .fields import Const, Field, Flag, Number, Stops, Text
from .prompt_request import PromptRequest, identity_field, load_json_object, max_tokens_field
from .tool_fields import BadToolField, tool_definition, tool_entries, with_tools

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
#: Most stop sequences OpenAI accepts.
MAX_STOP = 4

# The body's plain fields, declared once: parse_chat_object reads them and the OpenAPI document
# (openapi_v1.py, ChatCompletionRequest) shows them. messages, tools and tool_choice are parsed below.
MODEL = Text("model", required=True, blank=True, message="Field 'model' is required: an id from GET /v1/models",
             description="An id from GET /v1/models: the model, or agent/NAME.")
STREAM = Flag("stream", nullable=True)
INCLUDE_USAGE = Flag("include_usage", nullable=True, label="stream_options.include_usage")
MAX_TOKENS = max_tokens_field("max_tokens", nullable=True)
MAX_COMPLETION_TOKENS = max_tokens_field("max_completion_tokens", nullable=True, description="Wins over max_tokens.")
TEMPERATURE = Number("temperature", 0, 2, nullable=True)
TOP_P = Number("top_p", 0, 1, nullable=True)
STOP = Stops("stop", MAX_STOP, nullable=True)
USER = identity_field("user", "Who is asking, run through the user validator as user_id is.")
N = Const("n", 1, nullable=True, message="n must be 1: one choice per request is served")
CHAT_FIELDS: tuple[Field[Any], ...] = (MODEL, STREAM, MAX_TOKENS, MAX_COMPLETION_TOKENS, TEMPERATURE, TOP_P, STOP,
                                       USER, N)
TOOL_CHOICES = {"none": ToolChoice("none"), "auto": ToolChoice("auto"), "required": ToolChoice("required")}
#: The roles of turns that carry text alone; ``developer`` (OpenAI's newer name) is a system turn upstream.
PLAIN_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user"}


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions request: which model, the prompt request, how to answer."""

    model: str
    request: PromptRequest
    stream: bool = False
    include_usage: bool = False


def _text_of(content: Any, where: str) -> str:
    """A message's content as text: a string, a list of text parts, or null (empty)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidJson(f"{where}.content parts must be {{\"type\": \"text\", \"text\": \"...\"}} "
                                  "(only text is supported)")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidJson(f"{where}.content must be a string or a list of text parts")


def _tool_calls_of(calls: Any, where: str) -> tuple[ToolCall, ...]:
    if not isinstance(calls, list):
        raise InvalidJson(f"{where}.tool_calls must be a list")
    checked = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(function, dict) or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments", ""), str) or not isinstance(call.get("id", ""), str)):
            raise InvalidJson(f"{where}.tool_calls[{index}] must be {{\"id\", \"type\": \"function\", "
                              "\"function\": {\"name\", \"arguments\"}}")
        checked.append(ToolCall(call.get("id", ""), function["name"], function.get("arguments", "")))
    return tuple(checked)


def _message_of(item: Any, index: int) -> Message:
    """One message, checked and reduced to the fields a backend reads (``developer`` is a
    ``system`` turn to the upstream)."""
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise InvalidJson(f"{where} must be an object with 'role' and 'content'")
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidJson(f"{where}.role must be one of {', '.join(sorted(ROLES))}")
    text = _text_of(item.get("content"), where)
    name = item["name"] if isinstance(item.get("name"), str) else None
    if role == "assistant":
        calls = _tool_calls_of(item["tool_calls"], where) if item.get("tool_calls") is not None else ()
        return Message("assistant", text, tool_calls=calls, name=name)
    if role == "tool":
        if not isinstance(item.get("tool_call_id"), str):
            raise InvalidJson(f"{where}.tool_call_id must be a string on a tool message")
        return Message("tool", text, tool_call_id=item["tool_call_id"], name=name)
    return Message(PLAIN_ROLES[role], text, name=name)


def _messages_of(body: dict[str, Any]) -> tuple[Message, ...]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MissingPrompt("Field 'messages' is required and must be a non-empty list of messages")
    return tuple(_message_of(item, index) for index, item in enumerate(messages))


def _max_tokens(body: dict[str, Any]) -> int | None:
    """``max_completion_tokens`` (OpenAI's current name) else ``max_tokens``: a positive integer."""
    completion = MAX_COMPLETION_TOKENS.read(body)
    legacy = MAX_TOKENS.read(body)
    return completion if completion is not None else legacy


def _tools(body: dict[str, Any]) -> tuple[ToolDefinition, ...]:
    definitions = []
    for index, tool in enumerate(tool_entries(body, "tools must be a list of function tools")):
        function = tool.get("function") if isinstance(tool, dict) else None
        try:
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict) \
                    or function.get("parameters", {}) is None:  # a bad wrapper, or null parameters
                raise BadToolField("parameters")  # answered as any bad field: the one message below
            definitions.append(tool_definition(function.get("name"), function.get("description"),
                                               function.get("parameters")))
        except BadToolField:
            raise InvalidJson(f"tools[{index}] must be {{\"type\": \"function\", \"function\": "
                              "{\"name\", \"description\"?, \"parameters\"?}}") from None
    return tuple(definitions)


def _tool_choice(body: dict[str, Any], tools: tuple[ToolDefinition, ...]) -> ToolChoice | None:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        parsed = TOOL_CHOICES[choice]
    elif (isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict)
          and isinstance(choice["function"].get("name"), str)):
        parsed = ToolChoice("function", choice["function"]["name"])
    else:
        raise InvalidJson("tool_choice must be \"none\", \"auto\", \"required\" or "
                          "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    return with_tools(parsed, tools)


def _last_user_text(messages: tuple[Message, ...]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text
    return messages[-1].text


def parse_chat_object(body: dict[str, Any]) -> ChatRequest:
    """Validate a decoded chat-completions body."""
    model = MODEL.require(body)  # an empty or unknown id is a 404 model_not_found, later
    messages = _messages_of(body)
    N.read(body)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise InvalidJson("stream_options must be an object")
    tools = _tools(body)
    request = PromptRequest(
        prompt=_last_user_text(messages), user_id=USER.read(body), max_tokens=_max_tokens(body), model=model,
        messages=messages, tools=tools, temperature=TEMPERATURE.read(body), top_p=TOP_P.read(body),
        stop=STOP.read(body) or (), tool_choice=_tool_choice(body, tools))
    return ChatRequest(model, request, stream=bool(STREAM.read(body)),
                       include_usage=bool(INCLUDE_USAGE.read(stream_options or {})))


def parse_chat_body(raw: bytes | str) -> ChatRequest:
    """Parse and validate a raw chat-completions body."""
    return parse_chat_object(load_json_object(raw))

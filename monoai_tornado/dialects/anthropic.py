"""Anthropic Messages (API.md Part 3): requests parsed into the conversation model, runs
rendered back as ``message`` objects or Anthropic's server-sent events.

A codec only: no I/O. ``tool_use`` / ``tool_result`` blocks become the assistant's tool calls
and ``tool`` turns; the upstream's tool calls come back as ``tool_use`` blocks, their ids
prefixed ``toolu_`` (the prefix is taken off again when the client sends them back, so the
upstream sees its own ids). Every malformed field is a 400 (``invalid_json``; no messages:
``missing_prompt``); unknown fields are ignored.

>>> parsed = parse_messages_object({"model": "m", "max_tokens": 5, "system": "Be brief.",
...                                 "messages": [{"role": "user", "content": "hi"}]})
>>> parsed.request.prompt, [m.role for m in parsed.request.messages or ()]
('hi', ['system', 'user'])
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from ..conversation import Message, RunResult, ToolCall, ToolChoice, ToolDefinition
from ..errors import InvalidJson, MissingPrompt
from ..chat_request import STREAM, TOP_P
from ..fields import Field, Integer, Number, Stops, Text
from ..ids import SerialIds
from ..prompt_request import MAX_TOKENS_LIMIT, PromptRequest, identity_field, load_json_object
from ..tool_fields import BadToolField, ToolField, tool_definition, tool_entries, with_tools

#: The prefix of the tool-use ids this front hands out.
TOOL_ID_PREFIX = "toolu_"
#: Most stop sequences taken (Anthropic sets no limit; upstreams do).
MAX_STOP_SEQUENCES = 16
#: Blocks of the model's own reasoning a client sends back: dropped (no upstream takes them).
REASONING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use"}
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}

# The body's plain fields, declared once (fields.py): parse_messages_object reads them and
# openapi_anthropic.py shows them (stream and top_p are the chat front's own declarations).
MODEL = Text("model", required=True, blank=True, message="Field 'model' is required: a model name",
             description="A model name (GET /v1/models), an alias, or agent/NAME.")
MAX_TOKENS = Integer("max_tokens", 1, MAX_TOKENS_LIMIT, required=True,
                     missing="Field 'max_tokens' is required: a positive integer")
TEMPERATURE = Number("temperature", 0, 1, nullable=True)
TOP_K = Integer("top_k", 1, None, nullable=True, message="top_k must be a positive integer",
                description="Passed upstream as is.")
STOP_SEQUENCES = Stops("stop_sequences", MAX_STOP_SEQUENCES, alone=False, nullable=True)
#: ``metadata.user_id``: who is asking.
METADATA_USER_ID = identity_field("user_id", "Who is asking, through the user validator.")
MESSAGES_FIELDS: tuple[Field[Any], ...] = (MODEL, MAX_TOKENS, STREAM, TEMPERATURE, TOP_P, TOP_K, STOP_SEQUENCES)


@dataclass(frozen=True)
class MessagesRequest:
    """A validated ``POST /v1/messages`` body: the model named, the prompt request, streamed or not."""

    model: str
    request: PromptRequest
    stream: bool = False


# Parsing


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidJson(f"{where} must be a string")
    return value


def _text_blocks(content: Any, where: str) -> str:
    """A string, or a list of ``text`` blocks (joined by blank lines)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidJson(f"{where} must be a string or a list of text blocks")
    texts = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            _refuse_block(block, f"{where}[{index}]", "text")
        texts.append(_text(block.get("text"), f"{where}[{index}].text"))
    return "\n\n".join(texts)


def _refuse_block(block: Any, where: str, allowed: str) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "image":
        raise InvalidJson(f"{where}: image blocks are not supported: the upstream model takes text only")
    shown = f"'{kind}' blocks are" if isinstance(kind, str) else "this block is"
    raise InvalidJson(f"{where}: {shown} not supported here (allowed: {allowed})")


def upstream_id(client_id: str) -> str:
    """The upstream's id of a tool call the client names (``toolu_`` taken off)."""
    rest = client_id[len(TOOL_ID_PREFIX):] if client_id.startswith(TOOL_ID_PREFIX) else ""
    return rest or client_id


def client_id(call_id: str) -> str:
    """The ``tool_use`` id of an upstream tool call."""
    return TOOL_ID_PREFIX + call_id


def _tool_use(block: dict[str, Any], where: str) -> ToolCall:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name \
            or not isinstance(arguments, dict):
        raise InvalidJson(f"{where} must be {{\"type\": \"tool_use\", \"id\", \"name\", \"input\": {{...}}}}")
    return ToolCall(upstream_id(call_id), name, json.dumps(arguments, ensure_ascii=False))


def _tool_result(block: dict[str, Any], where: str) -> Message:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidJson(f"{where}.tool_use_id must be the id of a tool_use block")
    content = block.get("content", "")
    text = "" if content is None else _text_blocks(content, f"{where}.content")
    if block.get("is_error") is not None and not isinstance(block.get("is_error"), bool):
        raise InvalidJson(f"{where}.is_error must be true or false")
    return Message("tool", text, tool_call_id=upstream_id(call_id))


def _turns(item: Any, index: int) -> list[Message]:
    """One Anthropic message as conversation turns: a user message's tool results come first,
    as ``tool`` turns, then its text."""
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise InvalidJson(f"{where} must be an object with 'role' and 'content'")
    role, content = item.get("role"), item.get("content")
    if role != "user" and role != "assistant":
        raise InvalidJson(f"{where}.role must be 'user', 'assistant' or 'system'")
    if isinstance(content, str):
        return [Message("user" if role == "user" else "assistant", content)]
    if not isinstance(content, list):
        raise InvalidJson(f"{where}.content must be a string or a list of content blocks")
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for number, block in enumerate(content):
        at = f"{where}.content[{number}]"
        kind = block.get("type") if isinstance(block, dict) else None
        kind = kind if isinstance(kind, str) else None
        if kind == "text":
            texts.append(_text(block.get("text"), f"{at}.text"))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_use(block, at))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block, at))
        elif kind in REASONING_BLOCKS and role == "assistant":
            continue
        else:
            _refuse_block(block, at, "text, tool_use" if role == "assistant" else "text, tool_result")
    text = "\n\n".join(texts)
    if role == "assistant":
        return [Message("assistant", text, tool_calls=tuple(calls))]
    return results + [Message("user", text)] if texts or not results else results


def _conversation(body: dict[str, Any], items: list[Any]) -> list[Message]:
    """The turns of ``messages``, after one system turn: ``system`` and the text of any
    ``system`` message in the list (Claude Code sends some mid-conversation), joined, since
    many chat templates take a system turn only first."""
    systems = [] if body.get("system") is None else [_text_blocks(body["system"], "system")]
    turns: list[Message] = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("role") == "system":
            systems.append(_text_blocks(item.get("content"), f"messages[{index}].content"))
        else:
            turns += _turns(item, index)
    system = "\n\n".join(text for text in systems if text)
    return [Message("system", system), *turns] if system else turns


_TOOL_FIELD_ERRORS: dict[ToolField, str] = {
    "name": ".name must be a non-empty string",
    "description": ".description must be a string",
    "parameters": ".input_schema must be a JSON Schema object",
}


def _tools(body: dict[str, Any]) -> tuple[ToolDefinition, ...]:
    definitions = []
    for index, tool in enumerate(tool_entries(body, "tools must be a list of tools")):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidJson(f"{where} must be {{\"name\", \"description\"?, \"input_schema\"}}")
        if tool.get("type") not in (None, "custom"):
            raise InvalidJson(f"{where}: server tools ({tool.get('type')!r}) are not supported; "
                              "only client tools with an input_schema")
        try:
            definitions.append(tool_definition(tool.get("name"), tool.get("description"), tool.get("input_schema")))
        except BadToolField as exc:
            raise InvalidJson(where + _TOOL_FIELD_ERRORS[exc.field]) from None
    return tuple(definitions)


def _tool_choice(body: dict[str, Any], tools: tuple[ToolDefinition, ...]) -> ToolChoice | None:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str) and choice["name"]:
        parsed = ToolChoice("function", choice["name"])
    elif isinstance(kind, str) and kind in TOOL_CHOICES:
        parsed = ToolChoice("auto" if kind == "auto" else "required" if kind == "any" else "none")
    else:
        raise InvalidJson("tool_choice must be {\"type\": \"auto\" | \"any\" | \"none\"} or "
                          "{\"type\": \"tool\", \"name\": ...}")
    return with_tools(parsed, tools)


def _metadata_user(body: dict[str, Any]) -> str | None:
    metadata = body.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidJson("metadata must be an object")
    return METADATA_USER_ID.read(metadata)


def _last_user_text(messages: list[Message]) -> str:
    return next((message.text for message in reversed(messages) if message.role == "user"), "")


def parse_messages_object(body: dict[str, Any], *, counting: bool = False) -> MessagesRequest:
    """Validate a decoded messages body (``counting``: a count_tokens body, without ``max_tokens``)."""
    model = MODEL.require(body)  # an empty or unknown name is a 404 not_found_error, later
    max_tokens = None if counting else MAX_TOKENS.read(body)
    items = body.get("messages")
    if not isinstance(items, list) or not items:
        raise MissingPrompt("Field 'messages' is required and must be a non-empty list of messages")
    messages = _conversation(body, items)
    stream = STREAM.read(body)
    tools = _tools(body)
    request = PromptRequest(
        prompt=_last_user_text(messages), user_id=_metadata_user(body),
        max_tokens=max_tokens, messages=tuple(messages), tools=tools,
        temperature=TEMPERATURE.read(body), top_p=TOP_P.read(body), top_k=TOP_K.read(body),
        stop=STOP_SEQUENCES.read(body) or (), tool_choice=_tool_choice(body, tools), model=model)
    return MessagesRequest(model, request, stream=bool(stream))


def parse_messages_body(raw: bytes | str, *, counting: bool = False) -> MessagesRequest:
    """Parse and validate a raw ``/v1/messages`` (or ``count_tokens``) body."""
    return parse_messages_object(load_json_object(raw), counting=counting)


# Rendering


def stop_reason(result: RunResult) -> str:
    """Anthropic's ``stop_reason`` of a run: ``end_turn``, ``max_tokens``, ``tool_use``, ``stop_sequence``."""
    if result.finish_reason == "stop" and stop_sequence(result) is not None:
        return "stop_sequence"
    return STOP_REASONS.get(result.finish_reason, "end_turn")


def stop_sequence(result: RunResult) -> str | None:
    """The stop sequence the answer ended on, when the upstream said which one."""
    return result.stop_sequence


def tool_input(call: ToolCall) -> dict[str, Any]:
    """A tool call's arguments as the ``input`` object (``{}`` when the model wrote no object)."""
    try:
        value = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def usage_object(result: RunResult) -> dict[str, Any]:
    usage = {"input_tokens": result.usage.prompt_tokens, "output_tokens": result.usage.completion_tokens}
    if result.usage.cost_usd is not None:  # a priced model (API.md Part 3, "Money")
        return {**usage, "cost_usd": result.usage.cost_usd}
    return usage


#: Message ids: a random part per process (a forked worker's own), then a counter.
message_id = SerialIds("msg_")


def message_object(result: RunResult, model: str, msg_id: str | None = None) -> dict[str, Any]:
    """A finished run as a ``message`` object."""
    content: list[dict[str, Any]] = [{"type": "text", "text": result.text}] if result.text else []
    content += [{"type": "tool_use", "id": client_id(call.id), "name": call.name, "input": tool_input(call)}
                for call in result.tool_calls]
    return {"id": msg_id or message_id(), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason(result), "stop_sequence": stop_sequence(result),
            "usage": usage_object(result)}


PING = 'event: ping\ndata: {"type":"ping"}\n\n'
MESSAGE_STOP = 'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event: ``event: TYPE`` then ``data: {"type": TYPE, ...}``."""
    body = json.dumps({"type": event, **data}, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {body}\n\n"


class MessageStream:
    """The events of one streamed message, as text, in Anthropic's order: ``message_start``
    (and a ``ping``), the content blocks (text, then tool uses), ``message_delta``, ``message_stop``."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = message_id()
        #: Blocks started so far; the text block, when open, is the last one.
        self.blocks = 0
        self.text_open = False
        self._delta_head = ""

    def start(self, input_tokens: int) -> str:
        return ('event: message_start\ndata: {"type":"message_start","message":{"id":"' + self.id
                + '","type":"message","role":"assistant","model":' + encode_basestring(self.model)
                + ',"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":'
                + f'{int(input_tokens)},"output_tokens":0}}}}}}\n\n' + PING)

    def text(self, text: str) -> str:
        """A piece of the answer's text (its block is started on the first piece)."""
        opening = ""
        if not self.text_open:
            index = self.blocks
            opening = ('event: content_block_start\ndata: {"type":"content_block_start","index":'
                       f'{index},"content_block":{{"type":"text","text":""}}}}\n\n')
            self._delta_head = ('event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                                f'{index},"delta":{{"type":"text_delta","text":')
            self.text_open = True
            self.blocks += 1
        return opening + self._delta_head + encode_basestring(text) + "}}\n\n"

    def _close_text(self) -> str:
        if not self.text_open:
            return ""
        self.text_open = False
        return f'event: content_block_stop\ndata: {{"type":"content_block_stop","index":{self.blocks - 1}}}\n\n'

    def tool_use(self, call: ToolCall) -> str:
        """A whole tool call: its block, its input as one ``input_json_delta``, its end."""
        index = self.blocks
        self.blocks += 1
        block = {"type": "tool_use", "id": client_id(call.id), "name": call.name, "input": {}}
        partial = json.dumps(tool_input(call), ensure_ascii=False, separators=(",", ":"))
        return (self._close_text() + sse("content_block_start", {"index": index, "content_block": block})
                + sse("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                         "partial_json": partial}})
                + sse("content_block_stop", {"index": index}))

    def finish(self, result: RunResult) -> str:
        """The tool calls of the finished run, then ``message_delta`` and ``message_stop``."""
        events = self._close_text() + "".join(self.tool_use(call) for call in result.tool_calls)
        matched = stop_sequence(result)
        usage = result.usage
        cost = "" if usage.cost_usd is None else f',"cost_usd":{json.dumps(usage.cost_usd)}'
        return (events + 'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"'
                + stop_reason(result) + '","stop_sequence":'
                + ("null" if matched is None else encode_basestring(matched)) + '},"usage":{"input_tokens":'
                + f'{usage.prompt_tokens},"output_tokens":{usage.completion_tokens}{cost}}}}}\n\n' + MESSAGE_STOP)

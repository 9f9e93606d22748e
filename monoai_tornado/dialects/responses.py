"""The OpenAI Responses dialect (API.md Part 3): request bodies in, ``response`` objects out.

A body becomes a :class:`ResponsesRequest`: this turn's input as Responses items (checked and
normalized, the form they are stored in), the generation options and the tools. With the
items of the conversation so far (a stored response's), :meth:`ResponsesRequest.prompt_request`
gives the typed :class:`~monoai_tornado.prompt_request.PromptRequest` every target runs;
:class:`ResponseBuilder` renders the :class:`~monoai_tornado.conversation.RunResult` back as a
``response`` and its output items. Every malformed field is a 400 in OpenAI's shape; unknown
fields are ignored.

>>> r = parse_responses_object({"model": "m", "input": "hi", "instructions": "Be brief."})
>>> [(m.role, m.text) for m in r.prompt_request(r.items_after(())).messages]
[('system', 'Be brief.'), ('user', 'hi')]
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..chat_request import MODEL, STREAM, TEMPERATURE, TOP_P, ChatRequest
from ..conversation import Message, RunResult, ToolCall, ToolChoice, ToolDefinition
from ..errors import BadRequest, InvalidJson, MissingPrompt
from ..fields import Field, Flag
from ..prompt_request import PromptRequest, identity_field, load_json_object, max_tokens_field
from ..tool_fields import BadToolField, tool_definition, tool_entries

__all__ = ["ResponsesRequest", "ResponseBuilder", "parse_responses_object", "parse_responses_body",
           "MAX_CONVERSATION_ITEMS", "MAX_CONVERSATION_BYTES", "new_id"]

#: Items one conversation may hold (its stored turns and this input): past it, 400.
MAX_CONVERSATION_ITEMS = 10_000
#: Bytes (JSON) one conversation may hold: past it, 400 ``conversation_too_long``.
MAX_CONVERSATION_BYTES = 4 * 1024 * 1024
#: Metadata: at most 16 pairs, keys up to 64 characters, values up to 512 (as OpenAI).
MAX_METADATA = 16
INPUT_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


# The body's plain fields, declared once (fields.py): parse_responses_object reads them and
# openapi_responses.py shows them. model, stream, temperature and top_p are the chat front's own.
MAX_OUTPUT_TOKENS = max_tokens_field("max_output_tokens", nullable=True)
STORE = Flag("store", nullable=True)
USER = identity_field("user", "Who is asking (as user_id).")
SAFETY_IDENTIFIER = identity_field("safety_identifier", "As user, when no user.")
RESPONSES_FIELDS: tuple[Field[Any], ...] = (MODEL, STREAM, STORE, MAX_OUTPUT_TOKENS, TEMPERATURE, TOP_P, USER,
                                            SAFETY_IDENTIFIER)


def new_id(prefix: str) -> str:
    """A fresh id: ``resp_``, ``msg_``, ``fc_`` followed by 32 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _text_of(content: Any, where: str) -> str:
    """A message's content as text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS or not isinstance(part.get("text"), str):
                raise InvalidJson(f"{where}.content[{index}] must be {{\"type\": \"input_text\" or \"output_text\", "
                                  "\"text\": \"...\"} (only text is supported)")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidJson(f"{where}.content must be a string or a list of input_text / output_text parts")


def _string(item: dict[str, Any], name: str, where: str, *, empty: bool = True) -> str:
    value = item.get(name)
    if not isinstance(value, str) or (not empty and not value):
        raise InvalidJson(f"{where}.{name} must be a {'' if empty else 'non-empty '}string")
    return value


def _item(item: Any, where: str) -> dict[str, Any]:
    """One input item, checked, in the form it is stored."""
    if not isinstance(item, dict):
        raise InvalidJson(f"{where} must be an object (a message, function_call or function_call_output item)")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in INPUT_ROLES:
            raise InvalidJson(f"{where}.role must be one of user, system, developer, assistant")
        part = "output_text" if role == "assistant" else "input_text"
        return {"type": "message", "role": role,
                "content": [{"type": part, "text": _text_of(item.get("content"), where)}]}
    if kind == "function_call":
        arguments = item.get("arguments", "")
        if not isinstance(arguments, str):
            raise InvalidJson(f"{where}.arguments must be a string (the JSON text of the arguments)")
        return {"type": "function_call", "call_id": _string(item, "call_id", where, empty=False),
                "name": _string(item, "name", where, empty=False), "arguments": arguments}
    if kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else _text_of(output, where)
        return {"type": "function_call_output", "call_id": _string(item, "call_id", where, empty=False),
                "output": text}
    raise InvalidJson(f"{where}.type {kind!r} is not supported: send message, function_call or "
                      "function_call_output items")


def _input_items(body: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    value = body.get("input")
    if isinstance(value, str):
        return ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]},)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidJson("input must be a string or a list of items")
    if len(value) > MAX_CONVERSATION_ITEMS:
        raise BadRequest(f"input holds more than {MAX_CONVERSATION_ITEMS} items", code="conversation_too_long")
    return tuple(_item(item, f"input[{index}]") for index, item in enumerate(value))


def _tools(body: dict[str, Any]) -> tuple[ToolDefinition, ...]:
    checked = []
    for index, tool in enumerate(tool_entries(body, "tools must be a list of function tools")):
        if not isinstance(tool, dict):
            raise InvalidJson(f"tools[{index}] must be an object")
        if tool.get("type") != "function":
            raise BadRequest(f"tools[{index}].type {str(tool.get('type'))[:40]!r} is not supported here: only "
                             "function tools (the client runs them)", code="unsupported_tool")
        try:
            checked.append(tool_definition(tool.get("name"), tool.get("description"), tool.get("parameters")))
        except BadToolField:
            raise InvalidJson(f"tools[{index}] must be {{\"type\": \"function\", \"name\", \"description\"?, "
                              "\"parameters\"?}") from None
    return tuple(checked)


def _tool_choice(body: dict[str, Any]) -> ToolChoice | None:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return ToolChoice("function", choice["name"])
    raise InvalidJson('tool_choice must be "auto", "none", "required" or {"type": "function", "name": ...}')


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in metadata.items()):
        raise InvalidJson(f"metadata must be an object of at most {MAX_METADATA} string values "
                          "(keys up to 64 characters, values up to 512)")
    return dict(metadata)


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidJson(f"{name} must be a string")
    return value


def conversation_of(items: Sequence[dict[str, Any]]) -> tuple[Message, ...]:
    """Responses items as the conversation's messages: function calls join the assistant turn
    before them, each output is a ``tool`` turn."""
    messages: list[Message] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = INPUT_ROLES[item["role"]]
            text = "".join(part["text"] for part in item["content"])
            messages.append(Message(role, text))  # type: ignore[arg-type]
        elif kind == "function_call":
            call = ToolCall(item["call_id"], item["name"], item["arguments"])
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                messages[-1] = Message("assistant", last.text, (*last.tool_calls, call))
            else:
                messages.append(Message("assistant", "", (call,)))
        else:
            messages.append(Message("tool", item["output"], tool_call_id=item["call_id"]))
    return tuple(messages)


@dataclass(frozen=True)
class ResponsesRequest:
    """A validated ``POST /v1/responses`` body (or WebSocket ``response.create``)."""

    model: str
    input: tuple[dict[str, Any], ...]
    instructions: str | None = None
    tools: tuple[ToolDefinition, ...] = ()
    tool_choice: ToolChoice | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    user_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def items_after(self, history: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
        """The conversation's items with this input: 400 ``conversation_too_long`` past the bounds."""
        items = (*history, *self.input)
        if len(items) > MAX_CONVERSATION_ITEMS or \
                len(json.dumps(items, ensure_ascii=False)) > MAX_CONVERSATION_BYTES:
            raise BadRequest(f"The conversation is longer than this server keeps ({MAX_CONVERSATION_ITEMS} items, "
                             f"{MAX_CONVERSATION_BYTES} bytes): start a new one", code="conversation_too_long")
        if not items:
            raise MissingPrompt("input is required: a string or a list of items (with previous_response_id, "
                                "the new items)")
        return items

    def prompt_request(self, items: Sequence[dict[str, Any]]) -> PromptRequest:
        """The run's request: ``instructions`` first (they are this turn's only), then ``items``."""
        messages = conversation_of(items)
        if self.instructions:
            messages = (Message("system", self.instructions), *messages)
        prompt = next((m.text for m in reversed(messages) if m.role == "user"), messages[-1].text if messages else "")
        return PromptRequest(prompt, user_id=self.user_id, max_tokens=self.max_output_tokens, messages=messages,
                             tools=self.tools, temperature=self.temperature, top_p=self.top_p,
                             tool_choice=self.tool_choice, model=self.model)

    def as_chat(self) -> ChatRequest:
        """For the model lookup the chat front does (``model``, tools offered)."""
        return ChatRequest(self.model, PromptRequest("", tools=self.tools))


def parse_responses_object(body: dict[str, Any]) -> ResponsesRequest:
    """Validate a decoded Responses body."""
    model = MODEL.require(body)
    tools = _tools(body)
    previous = _optional_string(body, "previous_response_id")
    user, safety_identifier = USER.read(body), SAFETY_IDENTIFIER.read(body)
    user_id = user if user is not None else safety_identifier
    return ResponsesRequest(
        model, _input_items(body), _optional_string(body, "instructions"), tools, _tool_choice(body),
        MAX_OUTPUT_TOKENS.read(body), TEMPERATURE.read(body), TOP_P.read(body), previous or None,
        STORE.read(body) is not False, bool(STREAM.read(body)), user_id, _metadata(body))


def parse_responses_body(raw: bytes | str) -> ResponsesRequest:
    """Parse and validate a raw Responses body."""
    return parse_responses_object(load_json_object(raw))


def _usage(result: RunResult) -> dict[str, Any]:
    usage = result.usage
    shaped: dict[str, Any] = {"input_tokens": usage.prompt_tokens,
                              "input_tokens_details": {"cached_tokens": usage.cached_tokens},
                              "output_tokens": usage.completion_tokens,
                              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": usage.total_tokens}
    if usage.cost_usd is not None:
        shaped["cost_usd"] = usage.cost_usd
    return shaped


class ResponseBuilder:
    """One response's ids and fields, rendered the same streamed and not."""

    def __init__(self, request: ResponsesRequest) -> None:
        self.request = request
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.message_id = new_id("msg")
        #: The model the response names: the one requested, or under a gateway the model an alias
        #: maps to (set by the front), then the one that answered (a fallback's own name).
        self.model = request.model
        #: Whether a result's own model (who answered) is named once it is known (under a gateway).
        self.names_answering = False

    def response(self, status: str = "in_progress", output: Sequence[dict[str, Any]] = (),
                 result: RunResult | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``response`` object in ``status``, with ``output`` (and usage once ``result`` is known)."""
        request = self.request
        if result is not None and result.model is not None and self.names_answering:
            self.model = result.model.name
        answer: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": error, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
            "model": self.model, "output": list(output), "parallel_tool_calls": True,
            "previous_response_id": request.previous_response_id, "store": request.store,
            "temperature": request.temperature, "top_p": request.top_p,
            "tool_choice": _choice_of(request.tool_choice),
            "tools": [{"type": "function", "name": t.name, "description": t.description,
                       "parameters": dict(t.parameters), "strict": False} for t in request.tools],
            "text": {"format": {"type": "text"}}, "truncation": "disabled", "usage": None,
            "user": request.user_id, "metadata": request.metadata,
        }
        if result is not None:
            answer["usage"] = _usage(result)
            texts = [part["text"] for item in output if item["type"] == "message" for part in item["content"]]
            answer["output_text"] = "".join(texts)
        return answer

    def message_item(self, text: str, status: str = "completed") -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" \
            else []
        return {"type": "message", "id": self.message_id, "status": status, "role": "assistant", "content": content}

    @staticmethod
    def call_item(call: ToolCall, item_id: str, status: str = "completed") -> dict[str, Any]:
        arguments = call.arguments if status == "completed" else ""
        return {"type": "function_call", "id": item_id, "call_id": client_call_id(call.id), "name": call.name,
                "arguments": arguments, "status": status}

    def output(self, result: RunResult, call_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The output items: the answer's message (unless it only calls tools), then each call."""
        items = [self.message_item(result.text)] if result.text or not result.tool_calls else []
        ids = list(call_ids) or [new_id("fc") for _ in result.tool_calls]
        items += [self.call_item(call, item_id) for call, item_id in zip(result.tool_calls, ids)]
        return items

    @staticmethod
    def status_of(result: RunResult) -> str:
        return "incomplete" if result.finish_reason == "length" else "completed"

    def finished(self, result: RunResult, call_ids: Sequence[str] = ()) -> dict[str, Any]:
        """The whole ``response`` of a finished run."""
        return self.response(self.status_of(result), self.output(result, call_ids), result)


def client_call_id(call_id: str) -> str:
    """A tool call's ``call_id`` as OpenAI writes it (``call_...``): an upstream's own id (llama.cpp's,
    vLLM's) gets the prefix. The client sends it back as is, in the call and in its output alike,
    so the upstream still sees a matching pair."""
    return call_id if call_id.startswith("call_") else f"call_{call_id}"


def _choice_of(choice: ToolChoice | None) -> Any:
    if choice is None:
        return "auto"
    return {"type": "function", "name": choice.name} if choice.mode == "function" else choice.mode


def stored_items(output: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output items in the stored input form (what the next turn's conversation holds)."""
    items: list[dict[str, Any]] = []
    for item in output:
        if item["type"] == "message":
            text = "".join(part["text"] for part in item["content"])
            items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
        else:
            items.append({"type": "function_call", "call_id": item["call_id"], "name": item["name"],
                          "arguments": item["arguments"]})
    return items

"""Parsing of prompt bodies (HTTP POST bodies and WebSocket prompt messages) into :class:`PromptRequest`.

``/v1`` chat-completion bodies are parsed by its sibling :mod:`monoai_tornado.chat_request`.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from .backends.base import CallOptions, ToolSchema
from .backends.base import Message as UpstreamMessage
from .conversation import Message, ToolChoice, ToolDefinition
from .errors import BadRequest, InvalidJson, MissingPrompt
from .fastjson import loads
from .fields import Field, Identity, Integer, Text


@dataclass(frozen=True)
class PromptRequest:
    """A validated prompt, whatever dialect it came in: the typed conversation every codec
    parses into (see :mod:`monoai_tornado.conversation`).

    ``messages`` is the whole conversation when the client sent one (system, assistant and
    tool turns included); ``prompt`` is then the text of its last user turn. The generation
    options are named as OpenAI names them; ``None`` leaves the backend's default.
    """

    prompt: str
    user_id: str | None = None
    #: The completion cap the client asked for (``max_tokens``), else the server's default.
    max_tokens: int | None = None
    messages: tuple[Message, ...] | None = None
    tools: tuple[ToolDefinition, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    tool_choice: ToolChoice | None = None
    #: The model the client named (None: the server's default model).
    model: str | None = None

    def upstream_messages(self) -> list[UpstreamMessage]:
        """The conversation as OpenAI chat messages: what backends are given and tokens are
        counted on; the prompt alone is one user turn. A new list each call (an agent extends
        its own), of messages translated once per request (admission and the run both ask)."""
        known: tuple[UpstreamMessage, ...] | None = self.__dict__.get("_upstream")
        if known is None:  # (by hand: functools.cached_property takes a lock on Python 3.11)
            if self.messages is not None:
                known = tuple(message.to_openai() for message in self.messages)
            else:
                known = ({"role": "user", "content": self.prompt},)
            self.__dict__["_upstream"] = known
        return list(known)

    def tool_schemas(self) -> list[ToolSchema] | None:
        """The tools in OpenAI's shape, or None when the request offers none."""
        return [tool.to_openai() for tool in self.tools] or None

    def call_options(self) -> CallOptions | None:
        """The generation options of the request, or None when it sets none."""
        if (self.temperature is None and self.top_p is None and self.top_k is None and not self.stop
                and self.tool_choice is None):
            return None  # max_tokens is the run's cap: the meter passes it on
        return CallOptions(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, stop=self.stop,
                           tool_choice=self.tool_choice)


#: A ``\uD800``-``\uDFFF`` escape: the only way JSON text can carry a UTF-16 surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def load_json_object(raw: bytes | str) -> dict[str, Any]:
    """Decode a JSON object, raising :class:`InvalidJson` for anything else.

    Text that is not valid Unicode (an unpaired UTF-16 surrogate such as ``"\ud800"``) is
    refused here, once for every field and transport: it could not be encoded to UTF-8 by
    anything downstream (Redis, the backend, the answer).
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidJson("Request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidJson("Request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(value):
        raise InvalidJson("Request body is not valid JSON: a string holds an unpaired UTF-16 surrogate")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys included) cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


#: Bytes (UTF-8) an identity may have: ``user_id``, ``/v1``'s ``user``, any front's user field.
#: Identities are Redis keys and log fields: a longer one is refused, not stored.
MAX_IDENTITY_BYTES = 256
#: The largest ``max_tokens`` taken (2**31 - 1): ``1e308`` is no completion cap anyone means.
MAX_TOKENS_LIMIT = 2**31 - 1


@functools.lru_cache(maxsize=32)
def identity_field(name: str, description: str = "") -> Identity:
    """A user field (``user_id``, ``/v1``'s ``user``): a string or a number, at most
    :data:`MAX_IDENTITY_BYTES` bytes, ``null`` the same as absent; else 400 ``invalid_user_id``."""
    return Identity(name, max_bytes=MAX_IDENTITY_BYTES, nullable=True, error=BadRequest, code="invalid_user_id",
                    description=description)


@functools.lru_cache(maxsize=32)
def max_tokens_field(name: str = "max_tokens", *, nullable: bool = False, description: str = "") -> Integer:
    """A completion cap: a positive integer up to :data:`MAX_TOKENS_LIMIT`, else 400 ``invalid_json``.
    ``null`` is refused (API.md), except where OpenAI's API takes it as "not set" (``nullable``)."""
    return Integer(name, 1, MAX_TOKENS_LIMIT, nullable=nullable, description=description)


# Part 1's prompt body (POST /model, /agent/NAME and their /stream, a WebSocket prompt), declared
# once: parse_prompt_object reads these fields and GET /openapi.json shows them (PromptRequest).
PROMPT = Text("prompt", required=True, error=MissingPrompt,
              message="Field 'prompt' is required and must be a non-empty string", description="Must not be blank.")
USER_ID = identity_field(
    "user_id", "Who is asking (a number is turned into its decimal string; null is the same as absent); rate "
    "limits count per user, else per client IP. Never `ip:...`: that namespace is the client IPs'.")
MAX_TOKENS = max_tokens_field(description="Cap of the answer's tokens (default: the server's --default-max-tokens); "
                                          "a token budget may lower it.")
MODEL = Text("model", nullable=True, message="Field 'model' must be a non-empty string (a name from GET /v1/models)",
             description="Which model answers, under a gateway of several (a name from GET /v1/models; unknown: "
                         "404 model_not_found); with one model it is not looked at.")
PROMPT_BODY: tuple[Field[Any], ...] = (PROMPT, USER_ID, MAX_TOKENS, MODEL)


def capped_identity(text: str, field: str) -> str:
    """``text`` when it is at most :data:`MAX_IDENTITY_BYTES` bytes, else 400 ``invalid_json``."""
    return identity_field(field).capped(text)


def user_id_of(body: dict[str, Any], field: str = "user_id") -> str | None:
    """The optional user id in ``field``: a string, or a number turned into its decimal string,
    of at most :data:`MAX_IDENTITY_BYTES` bytes. Every front parses its user field here."""
    return identity_field(field).read(body)


def max_tokens_of(body: dict[str, Any], field: str = "max_tokens", *, null_allowed: bool = False) -> int | None:
    """The optional completion cap: absent, or a positive integer, else 400 ``invalid_json``.

    ``null`` is refused too (API.md), except where OpenAI's API takes it as "not set" (``/v1``).
    """
    return max_tokens_field(field, nullable=null_allowed).read(body)


def parse_prompt_object(body: dict[str, Any]) -> PromptRequest:
    """Validate a decoded body: ``prompt`` must be a non-blank string (:data:`PROMPT_BODY`)."""
    return PromptRequest(prompt=PROMPT.require(body), user_id=USER_ID.read(body), max_tokens=MAX_TOKENS.read(body),
                         model=MODEL.read(body))


def model_of(body: dict[str, Any]) -> str | None:
    """The optional ``model`` of a prompt body (Part 3: it chooses among a gateway's models)."""
    return MODEL.read(body)


def parse_prompt_body(raw: bytes | str) -> PromptRequest:
    """Parse and validate a raw prompt body."""
    return parse_prompt_object(load_json_object(raw))

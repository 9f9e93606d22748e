"""The embedded demo model: offline, deterministic, streamed in several chunks.

It is plainly a demo: its provider is ``"demo"`` and its answers say so. It reports no token
counts, so its usage is counted with tiktoken (and marked ``estimated``), exercising the same
path as real backends that report none.

With ``chunks`` and ``chunk_chars`` set, every answer is exactly ``chunks`` pieces of
``chunk_chars`` characters, so benchmarks compare the same work everywhere.
"""
from __future__ import annotations

import asyncio
import re

from ..usage import shared_counter
from .base import (Backend, CallOptions, EventStream, FinishReason, Message, TextDelta, TextDeltas, ToolCallsRequested,
                   ToolSchema)
from .demo_planner import plan_demo_turn

#: Default pause between chunks, in seconds: visible streaming without slowing tests.
DEFAULT_DELAY = 0.005
#: The answer quotes at most this much of the prompt, so its length (and time) stays bounded.
MAX_QUOTED_CHARS = 500


def _last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            return content
    return ""


def _history(messages: list[Message]) -> str:
    """What the model saw before the last turn, so that a client can tell its history arrived."""
    if len(messages) < 2:
        return ""
    roles: dict[str, int] = {}
    for message in messages:
        roles[str(message.get("role"))] = roles.get(str(message.get("role")), 0) + 1
    counts = ", ".join(f"{count} {role}" for role, count in roles.items())
    turns = roles.get("user", 0)
    return f"I saw {len(messages)} messages ({counts}) in {turns} user turn{'s' if turns != 1 else ''}. "


def split_into_chunks(text: str) -> list[str]:
    """Split text into word-sized pieces that join back to exactly ``text``."""
    return re.findall(r"\s*\S+|\s+", text)


class DemoBackend(Backend):
    """A deterministic stand-in model that needs no network and no weights.

    >>> backend = DemoBackend(delay=0)
    >>> backend.describe()
    {'provider': 'demo', 'name': 'monoai-demo'}
    """

    provider = "demo"
    supports_tools = True

    def __init__(
        self,
        *,
        name: str = "monoai-demo",
        delay: float = DEFAULT_DELAY,
        chunks: int | None = None,
        chunk_chars: int = 4,
    ) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if chunks is not None and (chunks < 1 or chunk_chars < 1):
            raise ValueError("chunks and chunk_chars must be >= 1")
        self.name = name
        self.delay = delay
        self.chunks = chunks
        self.chunk_chars = chunk_chars
        self._fixed_pieces = self._fixed_answer() if chunks is not None else None
        self._fixed_batch = TextDeltas(tuple(self._fixed_pieces)) if self._fixed_pieces else None

    def _fixed_answer(self) -> list[str]:
        alphabet = "abcdefghijklmnopqrstuvwxyz"
        assert self.chunks is not None
        return [
            "".join(alphabet[(i * self.chunk_chars + j) % 26] for j in range(self.chunk_chars))
            for i in range(self.chunks)
        ]

    def answer_pieces(self, messages: list[Message]) -> list[str]:
        """The pieces of the answer to ``messages``, in order."""
        if self._fixed_pieces is not None:
            return self._fixed_pieces
        prompt = _last_user_text(messages).strip()
        quoted = prompt if len(prompt) <= MAX_QUOTED_CHARS else prompt[:MAX_QUOTED_CHARS] + "..."
        text = (
            f"[demo model, not a real LLM] You said: \"{quoted}\". "
            f"That is {len(prompt.split())} words and {len(prompt)} characters. "
            f"{_history(messages)}Run with --backend openai to serve a real model."
        )
        return split_into_chunks(text)

    def _limited(self, pieces: list[str], options: CallOptions) -> tuple[list[str], FinishReason | None]:
        """``pieces`` cut before the first ``stop`` sequence, then to ``max_tokens`` tokens
        (``pieces`` itself when neither cuts anything), and the stop sequence that ended the
        answer when one did (named as vLLM names it)."""
        text = whole = "".join(pieces)
        found = [(at, stop) for stop in options.stop if (at := text.find(stop)) >= 0]
        cut, matched = min(found, key=lambda hit: hit[0]) if found else (len(text), None)
        text = text[:cut]
        # A token is at least one byte: a text of no more bytes than max_tokens needs no counting.
        if options.max_tokens is not None and len(text.encode()) > options.max_tokens:
            encoding = shared_counter().encoding
            tokens = encoding.encode(text, disallowed_special=())
            if len(tokens) > options.max_tokens:
                text = encoding.decode(tokens[: options.max_tokens]).rstrip("\ufffd")
                matched = None  # the cap ended it first
        finish = FinishReason("stop", matched) if matched is not None else None
        return (pieces if text == whole else split_into_chunks(text)), finish

    async def stream(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
                     options: CallOptions | None = None) -> EventStream:
        finish: FinishReason | None = None
        if tools:  # the planner decides: a reply word by word, or a line and tool calls
            turn = plan_demo_turn(messages, tools)
            if turn is not None and turn.calls:
                yield TextDelta(turn.text)
                yield ToolCallsRequested(turn.calls)
                return
            pieces = split_into_chunks(turn.text) if turn is not None else self.answer_pieces(messages)
        else:
            pieces = self.answer_pieces(messages)
            if options is not None and (options.stop or options.max_tokens is not None):
                pieces, finish = self._limited(pieces, options)
            if not self.delay:  # every piece is ready at once: hand them over in one step
                batch = self._fixed_batch if pieces is self._fixed_pieces else None
                yield batch if batch is not None else TextDeltas(tuple(pieces))
                if finish is not None:
                    yield finish
                return
        for index, piece in enumerate(pieces):
            if index and self.delay:
                await asyncio.sleep(self.delay)
            yield TextDelta(piece)
        if finish is not None:
            yield finish

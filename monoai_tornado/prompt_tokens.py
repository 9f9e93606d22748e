"""A prompt's tokens at admission, without stalling the event loop.

tiktoken takes about 0.4 s for 1 MB of text: counted on the event loop, one client sending big
prompts (even ones refused with 429) would delay every other request by that much. So:

- :func:`upper_bound` bounds the tokens from the byte length (every token is at least one
  byte of UTF-8), in microseconds;
- a prompt whose bound is small is counted at once (it is cheap);
- a big one is first admitted or refused on its bound (a request limit that is full refuses it
  without anything being counted), and only then counted exactly, in a worker thread
  (tiktoken releases the GIL) of a small pool, so the work is bounded too.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
from typing import Any, Iterable, Mapping

from .usage import TOKENS_PER_MESSAGE, TOKENS_TO_PRIME_REPLY, TokenCounter

#: Prompts bounded by at most this many tokens are counted on the event loop (about 1 ms).
INLINE_TOKENS = 16_384
#: Threads counting big prompts at once: more would only share the same cores.
COUNTING_THREADS = 2


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def upper_bound(messages: Iterable[Mapping[str, Any]]) -> int:
    """At least :meth:`TokenCounter.count_messages` of ``messages``: UTF-8 bytes plus the template."""
    total = TOKENS_TO_PRIME_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + 1
        content = message.get("content")
        if isinstance(content, str):
            total += _utf8_size(content)
        elif content is not None:
            total += _utf8_size(json.dumps(content, ensure_ascii=False))
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            total += _utf8_size(function.get("name", "")) + _utf8_size(function.get("arguments", ""))
    return total


class PromptCounter:
    """Counts prompts: small ones at once, big ones in a small pool of threads."""

    def __init__(self, counter: TokenCounter, *, inline_tokens: int = INLINE_TOKENS,
                 threads: int = COUNTING_THREADS) -> None:
        self.counter = counter
        self.inline_tokens = inline_tokens
        self.threads = threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def is_small(self, bound: int) -> bool:
        """True when a prompt of at most ``bound`` tokens is cheap enough to count on the loop."""
        return bound <= self.inline_tokens

    async def count(self, messages: list[Any], bound: int | None = None) -> int:
        """The exact tokens of ``messages``; off the event loop when they are big."""
        if self.is_small(upper_bound(messages) if bound is None else bound):
            return self.counter.count_messages(messages)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="token-count")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.counter.count_messages, messages)

    def close(self) -> None:
        """Stop the threads (a count under way finishes first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

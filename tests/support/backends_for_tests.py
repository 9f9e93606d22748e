"""Small real implementations of the backend protocol, for precise control in tests."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from monoai_tornado.backends.base import Backend, BackendEvent, ReportedUsage, TextDelta
from monoai_tornado.errors import BackendError, BackendTimeout


class ScriptedBackend(Backend):
    """Streams fixed pieces with a delay; can fail after some pieces; records its calls.

    ``failure``: None, "error" (BackendError), "timeout" (BackendTimeout) or "crash" (a bug).
    """

    provider = "test"

    def __init__(self, pieces: list[str] | None = None, *, delay: float = 0.0, failure: str | None = None,
                 fail_after: int = 0, usage: tuple[int, int] | None = None, name: str = "scripted") -> None:
        self.name = name
        self.pieces = pieces if pieces is not None else ["Hello", ", ", "world", "!"]
        self.delay = delay
        self.failure = failure
        self.fail_after = fail_after
        self.usage = usage
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        self.sent_pieces: list[int] = []
        #: The CallOptions of every call, in order.
        self.options: list[Any] = []

    async def stream(self, messages: list[dict[str, Any]], *, tools: Any = None, options: Any = None) -> AsyncIterator[BackendEvent]:
        self.started += 1
        self.options.append(options)
        sent = 0
        try:
            for index, piece in enumerate(self.pieces):
                if self.failure and index == self.fail_after:
                    self._fail()
                if self.delay:
                    await asyncio.sleep(self.delay)
                sent += 1
                yield TextDelta(piece)
            if self.failure and self.fail_after >= len(self.pieces):
                self._fail()
            if self.usage:
                yield ReportedUsage(*self.usage)
            self.finished += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        finally:
            self.sent_pieces.append(sent)

    def _fail(self) -> None:
        if self.failure == "timeout":
            raise BackendTimeout("upstream did not answer in time")
        if self.failure == "crash":
            raise ZeroDivisionError("division by zero")
        raise BackendError("upstream exploded")


class EchoBackend(Backend):
    """Answers with the prompt itself, word by word, yielding to the loop between words."""

    provider, name = "test", "echo"

    async def stream(self, messages: list[dict[str, Any]], *, tools: Any = None, options: Any = None) -> AsyncIterator[BackendEvent]:
        words = messages[-1]["content"].split(" ")
        for index, word in enumerate(words):
            await asyncio.sleep(0)
            yield TextDelta(word if index == 0 else " " + word)


class RecordingEvents:
    """RunEvents that records every text piece and step, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    async def on_text(self, text: str) -> None:
        self.log.append(("text", text))

    async def on_step(self, step: dict[str, Any]) -> None:
        self.log.append(("step", step))

    @property
    def texts(self) -> list[str]:
        return [v for k, v in self.log if k == "text"]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return [v for k, v in self.log if k == "step"]

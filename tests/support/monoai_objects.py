"""Stand-ins shaped like MonoAI's objects (sync and async ``ask``/``run``, streaming callbacks) for the adapters."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any


def words(text: str) -> list[str]:
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]


class SyncModel:
    """Shaped like MonoAI's Model: sync ask(), one streaming callback kept on the object."""

    provider = "stand-in"
    model = "sync-1"

    def __init__(self, *, delay: float = 0.0, usage: dict[str, int] | None = None, fail: str | None = None,
                 gate: threading.Event | None = None) -> None:
        self.delay, self.usage, self.fail, self.gate = delay, usage, fail, gate
        self._callback: Any = None
        self.active = self.max_active = self.calls = 0
        self.threads: set[str] = set()
        self.guard = threading.Lock()
        self.pieces = 0  # chunks handed to the callback

    def enable_streaming(self, callback: Any) -> None:
        self._callback = callback

    def ask(self, prompt: str) -> dict[str, Any]:
        with self.guard:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        self.threads.add(threading.current_thread().name)
        try:
            if self.fail:
                raise RuntimeError(self.fail)
            text = f"echo: {prompt}"
            for index, piece in enumerate(words(text)):
                if self._callback is not None:
                    self._callback(piece)
                    self.pieces += 1
                if index == 0 and self.gate is not None:
                    assert self.gate.wait(5), "the test never opened the gate"
                if self.delay:
                    time.sleep(self.delay)
            answer: dict[str, Any] = {"prompt": prompt, "response": text,
                                      "model": {"provider": self.provider, "name": self.model}}
            if self.usage is not None:
                answer["usage"] = self.usage
            return answer
        finally:
            with self.guard:
                self.active -= 1


class AsyncModel:
    """Shaped like MonoAI's Model with an async ask()."""

    provider = "stand-in"
    model = "async-1"

    def __init__(self, *, delay: float = 0.0, fail: str | None = None) -> None:
        self.delay, self.fail = delay, fail
        self._callback: Any = None
        self.active = self.max_active = 0
        self.cancelled = 0

    def enable_streaming(self, callback: Any) -> None:
        self._callback = callback

    async def ask(self, prompt: str) -> dict[str, Any]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.fail:
                raise ValueError(self.fail)
            text = f"async echo: {prompt}"
            for piece in words(text):
                self._callback(piece)
                await asyncio.sleep(self.delay)
            return {"response": text, "usage": {"input_tokens": 5, "output_tokens": 9}}
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1


class PlainModel:
    """No streaming at all: the whole answer comes back from ask()."""

    def ask(self, prompt: str) -> dict[str, Any]:
        return {"response": f"plain: {prompt}"}


class SyncAgent:
    """Shaped like MonoAI's Agent: run() streams, and reports its own iterations."""

    name = "researcher"

    def __init__(self, *, usage: dict[str, int] | None = None, fail: str | None = None, delay: float = 0.0) -> None:
        self.usage, self.fail, self.delay = usage, fail, delay
        self._callback: Any = None

    def enable_streaming(self, callback: Any) -> None:
        self._callback = callback

    def run(self, prompt: str) -> dict[str, Any]:
        if self.fail:
            raise KeyError(self.fail)
        for piece in ["Thinking", "...", " done: ", prompt]:
            self._callback({"content": piece})  # chunks may be dicts
            time.sleep(self.delay)
        answer: dict[str, Any] = {"prompt": prompt, "response": f"done: {prompt}",
                                  "iterations": [{"step": 1, "tool": "search", "output": "found"}]}
        if self.usage is not None:
            answer["usage"] = self.usage
        return answer


class AsyncAgent:
    """An agent with async run() and no streaming; its docstring describes it."""

    async def run(self, prompt: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"response": f"async agent: {prompt}"}

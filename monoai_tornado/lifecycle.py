"""One owner of a served application's life: what is in flight, and how it ends.

The pipeline registers its runs and pending settlements here, the handlers their prompts in
progress and their open WebSockets; :meth:`Lifecycle.drain` ends them all in order: wait for
the work in progress, cancel what is left with :data:`SHUTDOWN` as the reason (a handler that
sees it tells its client ``shutting_down``), close the WebSockets Tornado does not close
itself, and write the usage still pending.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, Protocol

log = logging.getLogger("monoai_tornado.server")

#: The message runs are cancelled with when the server stops past its drain timeout.
SHUTDOWN = "server shutting down"
#: RFC 6455 status of a WebSocket closed because the server goes away.
CLOSE_GOING_AWAY = 1001


class Closable(Protocol):
    """An open connection the server must close itself (a WebSocket)."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


def cancelled_for_shutdown(exc: BaseException) -> bool:
    """Whether ``exc`` is the cancellation :meth:`Lifecycle.drain` sends."""
    return isinstance(exc, asyncio.CancelledError) and exc.args == (SHUTDOWN,)


class Lifecycle:
    """Runs, prompts in progress, open WebSockets and pending settlements of one application."""

    def __init__(self) -> None:
        #: Tasks running a prompt (registered by the pipeline).
        self.runs: set[asyncio.Task[Any]] = set()
        #: Handlers with a prompt in progress, from its arrival until its answer is written.
        self.busy: set[object] = set()
        #: Open WebSockets, so that shutdown can close them (Tornado does not).
        self.sockets: set[Closable] = set()
        self._settling: set[asyncio.Task[None]] = set()

    @property
    def runs_in_flight(self) -> int:
        return len(self.runs)

    def settle_later(self, settlement: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``settlement`` in a task of its own that a run's cancellation cannot stop."""
        task = asyncio.ensure_future(settlement)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def settled(self) -> None:
        """Wait until every pending usage record has been written."""
        while self._settling:
            await asyncio.gather(*list(self._settling), return_exceptions=True)

    def cancel_runs(self, reason: str = SHUTDOWN) -> None:
        """Cancel every run in flight, saying why (``task.cancel(reason)``)."""
        for task in list(self.runs):
            task.cancel(reason)

    async def drain(self, timeout: float) -> None:
        """Let prompts in progress finish up to ``timeout`` seconds (their answers written),
        cancel the rest, close every WebSocket and write the usage still pending."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self.busy or self.runs) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.busy or self.runs:
            log.warning("drain timeout: cancelling %d runs still in flight", len(self.runs))
            self.cancel_runs(SHUTDOWN)
            for _ in range(100):  # let the handlers tell their clients (bounded: 2 s)
                if not self.busy:
                    break
                await asyncio.sleep(0.02)
        for socket in list(self.sockets):
            socket.close(CLOSE_GOING_AWAY, SHUTDOWN)
        await self.settled()

"""The one path every prompt takes, whatever transport it came in by.

``parse body -> identify user -> admit (rate limit) -> run target -> record usage``

Handlers parse the body (:mod:`monoai_tornado.requests`), then call :meth:`Pipeline.admit`
and :meth:`Pipeline.run` and only translate the results to their wire format.
"""
from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from .backends.base import Backend
from .calls import RunEvents, UsageMeter, call_model
from .errors import ApiError, BackendError, ClientGone, Overloaded, RateLimited
from .identity import Identity, IdentityResolver
from .metrics import Metrics
from .ratelimit import Admission
from .requests import PromptRequest
from .usage import TokenCounter, Usage

log = logging.getLogger("monoai_tornado.pipeline")


class Target(Protocol):
    """Something a prompt runs on: the model, or an agent."""

    name: str

    async def run(self, prompt: str, *, meter: UsageMeter, events: RunEvents) -> dict[str, Any]:
        ...


class ModelTarget:
    """Runs a prompt on a backend and shapes the model result of API.md."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name

    async def run(self, prompt: str, *, meter: UsageMeter, events: RunEvents) -> dict[str, Any]:
        messages = [{"role": "user", "content": prompt}]
        on_text = events.on_text if getattr(events, "wants_text", True) else None
        outcome = await call_model(self.backend, messages, meter=meter, on_text=on_text,
                                   prompt_tokens=meter.admitted_prompt_tokens)
        return {
            "prompt": prompt,
            "response": outcome.text,
            "model": self.backend.describe(),
            "usage": outcome.usage.to_dict(),
        }


@dataclass
class Ticket:
    """An admitted request: who it is and the limiter's admission (None without a limiter)."""

    request: PromptRequest
    identity: Identity
    admission: Admission | None = None
    #: What the run used, once it ended (for the access log).
    usage: Usage | None = None
    #: The prompt's tokens when admission counted them (so the run need not count them again).
    prompt_tokens: int | None = None


class Pipeline:
    """Identifies, admits, runs and accounts for prompts; shared by every handler."""

    def __init__(
        self,
        *,
        counter: TokenCounter,
        identity: IdentityResolver,
        limiter: Any = None,
        max_concurrent_runs: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.counter = counter
        self.identity = identity
        self.limiter = limiter
        self.max_concurrent_runs = max_concurrent_runs
        self._runs: set[asyncio.Task[Any]] = set()
        self._settling: set[asyncio.Task[None]] = set()

    @property
    def runs_in_flight(self) -> int:
        return len(self._runs)

    def cancel_all_runs(self) -> None:
        """Cancel every run in flight (shutdown past its drain timeout)."""
        for task in list(self._runs):
            task.cancel()

    async def admit(self, request: PromptRequest, peer: str, headers: Mapping[str, str]) -> Ticket:
        """Identify the user and take the request through the rate limiter, before any model work.

        The ticket's ``admission`` holds the limits' figures a transport may send as headers.
        """
        identity = await self.identity.resolve(request.user_id, peer, headers)
        if self.max_concurrent_runs is not None and self.runs_in_flight >= self.max_concurrent_runs:
            self.metrics.count_refusal("overloaded")
            raise Overloaded("Server is at its limit of concurrent runs; try again shortly", retry_after=1)
        if self.limiter is None:
            return Ticket(request, identity)
        prompt_tokens = self.counter.count(request.prompt)
        admission = await self.limiter.admit(identity.key, prompt_tokens)
        if not admission.allowed:
            self.metrics.count_refusal("rate_limited")
            retry_after = max(1, int(math.ceil(admission.retry_after)))
            raise RateLimited(f"Rate limit exceeded for {identity.key}; retry in {retry_after} s",
                              retry_after=retry_after, states=admission.states)
        return Ticket(request, identity, admission, prompt_tokens=prompt_tokens)

    async def run(self, ticket: Ticket, target: Target, events: RunEvents) -> dict[str, Any]:
        """Run an admitted prompt; the tokens it used are recorded however it ends."""
        meter = UsageMeter(self.counter, admitted_prompt_tokens=ticket.prompt_tokens)
        task = asyncio.current_task()
        assert task is not None
        self._runs.add(task)
        try:
            result = await target.run(ticket.request.prompt, meter=meter, events=events)
        except BackendError as exc:
            self.metrics.count_backend_error(exc.code)
            raise
        except (ApiError, ClientGone, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("run of %s failed", target.name)
            self.metrics.count_backend_error(BackendError.code)
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._runs.discard(task)
            usage = self._measure(ticket, meter)
            settlement = self._record(ticket, usage.total_tokens)
        if settlement is not None:
            await asyncio.shield(settlement)
        return result

    def _measure(self, ticket: Ticket, meter: UsageMeter) -> Usage:
        """What the run used (counted once), into the ticket and the metrics."""
        ticket.usage = usage = meter.total
        self.metrics.count_tokens(ticket.identity.kind, usage.prompt_tokens, usage.completion_tokens)
        if meter.first_text_at is not None:
            self.metrics.observe_first_chunk(meter.first_text_at - meter.started_at)
        return usage

    def _record(self, ticket: Ticket, total: int) -> asyncio.Task[None] | None:
        """Settle the reservation with the real total in a task the run's cancellation cannot stop."""
        if self.limiter is None or ticket.admission is None:
            return None
        settle_now = getattr(self.limiter, "settle_now", None)
        if settle_now is not None and settle_now(ticket.admission, total):
            return None  # the memory store settles at once: no task needed
        task = asyncio.ensure_future(self._settle(ticket, total))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def _settle(self, ticket: Ticket, total_tokens: int) -> None:
        try:
            await self.limiter.settle(ticket.admission, total_tokens)
        except Exception:
            log.warning("could not record %d tokens for %s", total_tokens, ticket.identity.key, exc_info=True)

    async def drain_settlements(self) -> None:
        """Wait until every usage record has been written (tests and shutdown)."""
        while self._settling:
            await asyncio.gather(*list(self._settling), return_exceptions=True)

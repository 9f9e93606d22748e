"""A model name as a backend: each call goes to one of its deployments, and a failure before the
first event is retried on another deployment, then on the fallbacks, invisibly to the caller.

Failures (API.md Part 3): connection refused, reset or timed out, no first token within
``timeout``, upstream 429/500/502/503/504 (the deployment cools down; a 429's or 503's
``Retry-After`` sets for how long), 401/403 (disabled until the next reload). An upstream
400/413/422 is the client's: raised at once (``upstream_rejected``), never retried. Once an
event went out, nothing is retried. Only the attempt that answered yields events, so a failed
attempt is never metered nor billed.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from ..backends.base import Backend, CallOptions, EventStream, Message, ReportedUsage, TextDelta, TextDeltas, ToolSchema
from ..errors import ApiError, BackendError, BackendTimeout, UpstreamBusy, UpstreamRejected
from ..usage import TokenCounter
from .note import ROUTE_NOTE
from .router import Router
from .slots import ModelRoute, Slot
from .state import Deployment, Outcome

log = logging.getLogger("monoai_tornado.routing")


class NoDeployment(ApiError):
    """No deployment of the model (nor of its fallbacks) can take the call now."""

    status, code = 503, "no_deployment"


class RouterHolder(Protocol):
    """Where the current router is (a reload replaces it)."""

    router: Router
    counter: TokenCounter


def classify(exc: BaseException) -> tuple[Outcome, float | None, bool]:
    """What a failed attempt says about its deployment: the outcome, the cooldown it asks for
    (None: the configured one) and whether the cooldown ends with a probe."""
    status = exc.extra.get("upstream_status") if isinstance(exc, ApiError) else None
    if status in (401, 403):
        return "unauthorized", None, True
    if isinstance(exc, UpstreamBusy):
        seconds = float(exc.retry_after) if exc.retry_after is not None else None
        return "rate_limited", seconds, status != 429
    if isinstance(exc, BackendTimeout):
        return "timeout", None, True
    return "failure", None, True


class RoutedBackend(Backend):
    """The model ``name`` of the holder's current router, as one backend."""

    def __init__(self, holder: RouterHolder, name: str) -> None:
        self.holder = holder
        self.name = name
        first = holder.router.models[name].deployments[0].backend
        self.provider = first.provider
        self.encoding_model = first.encoding_model
        self.supports_tools = all(d.backend.supports_tools for d in holder.router.models[name].deployments)

    def describe(self) -> dict[str, str]:
        return {"provider": self.provider, "name": self.name}

    async def stream(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
                     options: CallOptions | None = None) -> EventStream:
        router = self.holder.router
        counter = self.holder.counter
        note = ROUTE_NOTE.get()
        prompt: list[int] = []  # the prompt's tokens, counted once when a deployment's tpm asks

        def prompt_tokens() -> int:
            if not prompt:
                prompt.append(counter.count_messages(messages))
            return prompt[0]

        last: BaseException | None = None
        for route in router.chain(self.name):
            tried: set[str] = set()
            for _ in range(router.retries + 1):
                slot = route.take(tried) or await route.acquire(tried, prompt_tokens)
                if slot is None:
                    break
                deployment = slot.deployment
                tried.add(deployment.id)
                if note is not None:
                    note.chosen(deployment.header_value)
                started = False
                attempt = _Attempt(route, slot, counter, messages)
                counts_texts = attempt.texts is not None
                try:
                    stream = _call(deployment.backend, messages, tools, options)
                    try:
                        async for event in stream:
                            if not started:
                                started = True
                                attempt.first_event()
                                if note is not None:
                                    note.answering(deployment.id, route.name, deployment.backend.provider)
                            if counts_texts or isinstance(event, ReportedUsage):
                                attempt.saw(event)
                            yield event
                    finally:  # (contextlib.aclosing's work, without its two coroutines)
                        await stream.aclose()
                    attempt.end("ok")
                    return
                except UpstreamRejected:
                    attempt.end("rejected")
                    raise
                except (BackendError, UpstreamBusy, OSError) as exc:
                    outcome, seconds, probe = classify(exc)
                    self._failed(router, deployment, exc, outcome, seconds, probe)
                    attempt.end(outcome if not started else "error_after_start")
                    if started:
                        raise
                    last = exc
                except GeneratorExit:  # the caller stopped reading (its cap): a normal end
                    attempt.end("ok")
                    raise
                except ApiError:  # not the deployment's failure (the client's, the server's own)
                    attempt.end("error")
                    raise
                except Exception as exc:  # a backend that raised something else (an in-process model)
                    self._failed(router, deployment, exc, "failure", None, True)
                    attempt.end("failure" if not started else "error_after_start")
                    if started:
                        raise
                    last = exc
                except BaseException:
                    attempt.end("cancelled")
                    raise
        if last is not None:  # every attempt failed: the last failure is the answer
            raise last
        raise NoDeployment(f"No deployment of model '{self.name}' can take the request now; retry later",
                           retry_after=router.retry_after())

    def _failed(self, router: Router, deployment: Deployment, exc: BaseException, outcome: Outcome,
                seconds: float | None, probe: bool) -> None:
        if outcome == "unauthorized":
            if not deployment.disabled:
                deployment.disable()
                log.error("deployment %s refused our credentials: disabled until the configuration is reloaded",
                          deployment.id)
            return
        deployment.cool_down(router.cooldown if seconds is None else seconds, failure=probe)
        log.warning("deployment %s failed (%s), left out for %.0f s: %s", deployment.id, outcome,
                    router.cooldown if seconds is None else seconds, exc)


def _call(backend: Backend, messages: list[Message], tools: list[ToolSchema] | None,
          options: CallOptions | None) -> EventStream:
    if options is not None:
        return backend.stream(messages, tools=tools, options=options)
    return backend.stream(messages, tools=tools) if tools else backend.stream(messages)


class _Attempt:
    """One attempt's accounting: its slot, first token time, duration and tokens."""

    __slots__ = ("route", "slot", "counter", "messages", "started_at", "reported", "texts", "open")

    def __init__(self, route: ModelRoute, slot: Slot, counter: TokenCounter, messages: list[Message]) -> None:
        self.route, self.slot, self.counter, self.messages = route, slot, counter, messages
        self.started_at = time.monotonic()
        self.reported: ReportedUsage | None = None
        self.texts: list[str] | None = [] if slot.admission is not None else None
        self.open = True

    def first_event(self) -> None:
        self.slot.deployment.observe_first_token(time.monotonic() - self.started_at)

    def saw(self, event: Any) -> None:
        if isinstance(event, ReportedUsage):
            self.reported = event
        elif self.texts is not None:
            if isinstance(event, TextDelta):
                self.texts.append(event.text)
            elif isinstance(event, TextDeltas):
                self.texts.extend(event.texts)

    def end(self, outcome: str) -> None:
        if not self.open:
            return
        self.open = False
        deployment = self.slot.deployment
        stats = deployment.stats
        stats.attempts[outcome] += 1
        stats.duration.observe(time.monotonic() - self.started_at)
        total: int | None = None
        if self.reported is not None:
            stats.prompt_tokens += self.reported.prompt_tokens
            stats.completion_tokens += self.reported.completion_tokens
            total = self.reported.prompt_tokens + self.reported.completion_tokens
        elif self.texts is not None and outcome in ("ok", "error_after_start", "cancelled"):
            total = self.counter.count_messages(self.messages) + self.counter.count("".join(self.texts))
        elif outcome not in ("ok", "error_after_start", "cancelled"):
            total = 0  # a failed attempt uses none of the deployment's tpm
        self.route.release(self.slot, total)

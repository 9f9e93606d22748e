"""The one path every prompt takes, whatever transport it came in by.

``parse body -> identify user -> admit (rate limit) -> run target -> record usage``

Handlers parse the body (:mod:`monoai_tornado.prompt_request`), then call :meth:`Pipeline.admit`
and :meth:`Pipeline.run` and only translate the results to their wire format.
"""
from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from .backends.base import Message
from .conversation import RunResult
from .calls import RunEvents, UsageMeter
from .keys import ApiKey
from .errors import ApiError, BackendError, ClientGone, Overloaded, RateLimited, SpendLimited, TooManyConcurrent
from .identity import UNCHECKED, Identity, IdentityResolver, Unchecked
from .lifecycle import Lifecycle
from .metrics import Metrics
from .model_access import allowed_model
from .money.ledger import UsageLedger, ledger_entry
from .money.prices import Prices
from .ratelimit import Admission, Limit, Limiter
from .prompt_request import PromptRequest
from .prompt_tokens import PromptCounter, upper_bound
from .targets import Target, model_name, prices_of
from .request_trace import RequestTrace, Tracing, current_trace
from .usage import TokenCounter, Usage

log = logging.getLogger("monoai_tornado.pipeline")

#: The completion cap of a run whose request names none (``--default-max-tokens``).
DEFAULT_MAX_TOKENS = 4096


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
    #: The run's completion cap: the request's ``max_tokens``, else the server's default,
    #: lowered to what the user's token budget had left.
    max_tokens: int | None = None
    #: Tokens in all the run may use (the reservation), under a token limit.
    budget: int | None = None
    #: Set once the run's place and reservation were given back (see :meth:`Pipeline.finish`).
    finished: bool = False
    #: The prices the run is billed at (None: unpriced).
    prices: Prices | None = None
    #: Nano-dollars held for the run under a spend limit (the most it may cost), else None.
    spend: int | None = None
    #: Names the run in the usage ledger (and logs).
    request_id: str = ""
    #: The path the prompt came by (``/model``, ``/v1/chat/completions``, ...), for the ledger.
    route: str = ""
    #: The deployment that answered (routing), and how many attempts it took.
    deployment: str | None = None
    attempts: int = 1
    #: The request's id and trace context (set by :meth:`Pipeline.admit`, which sets ``request_id`` from it).
    trace: RequestTrace | None = None
    #: The run's result once it ended, and seconds from its start to its first text (logs, traces).
    result: RunResult | None = None
    first_token_seconds: float | None = None


class Pipeline:
    """Identifies, admits, runs and accounts for prompts; shared by every handler."""

    def __init__(
        self,
        *,
        counter: TokenCounter,
        identity: IdentityResolver,
        limiter: Limiter | None = None,
        max_concurrent_runs: int | None = None,
        metrics: Metrics | None = None,
        lifecycle: Lifecycle | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        ledger: UsageLedger | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        #: OpenTelemetry's tracer when it is on (``--otel``), else None.
        self.tracing = tracing
        self.counter = counter
        self.identity = identity
        self.limiter = limiter
        self.max_concurrent_runs = max_concurrent_runs
        self.default_max_tokens = default_max_tokens
        #: Admitted runs not yet finished: counted when admitted, so the limit is exact.
        self.admitted = 0
        #: Counts big prompts off the event loop.
        self.prompt_counter = PromptCounter(counter)
        #: Where runs and pending settlements are tracked, and ended at shutdown.
        self.lifecycle = lifecycle or Lifecycle()
        #: Where every finished run is written (``--usage-log``), or None.
        self.ledger = ledger

    @property
    def runs_in_flight(self) -> int:
        return self.lifecycle.runs_in_flight

    async def admit(self, request: PromptRequest, peer: str, headers: Mapping[str, str],
                    target: Target | None = None, trace: RequestTrace | None = None,
                    api_key: ApiKey | None | Unchecked = UNCHECKED) -> Ticket:
        """Identify the user and take the request through the rate limiter, before any model work.

        The ticket's ``admission`` holds the limits' figures a transport may send as headers.
        ``target``'s prices (when it has some) price the run: under a spend limit, admission
        reserves its cost; without prices it is refused there (403 ``model_not_priced``).
        ``trace`` (the handler's; else made from ``headers``) becomes the current one: the run and
        its upstream requests carry its id; the caller ends it (:meth:`end_trace`). ``api_key``:
        the key ``headers`` carry, when the caller checked it already.
        """
        trace = self.start_trace(trace or RequestTrace.from_headers(headers))
        ticket = await self._admit(request, peer, headers, target, api_key)
        ticket.trace = trace
        ticket.request_id = trace.request_id
        return ticket

    def start_trace(self, trace: RequestTrace) -> RequestTrace:
        """Make ``trace`` the current one (and open its span when tracing is on)."""
        current_trace.set(trace)
        if self.tracing is not None and trace.tracing is None:
            trace.tracing = self.tracing
            self.tracing.start_request(trace)
        return trace

    def end_trace(self, trace: RequestTrace, status: int | str, ticket: Ticket | None = None) -> None:
        """The request ended with ``status`` (an HTTP status, or a WebSocket outcome): close its span."""
        if trace.tracing is not None and not trace.ended:
            trace.ended = True
            trace.tracing.end_request(trace, status, ticket)

    async def _admit(self, request: PromptRequest, peer: str, headers: Mapping[str, str],
                     target: Target | None, api_key: ApiKey | None | Unchecked) -> Ticket:
        prices = prices_of(target) if target is not None else None
        identity = await self.identity.resolve(request.user_id, peer, headers, api_key)
        if (trace := current_trace.get()) is not None:
            trace.identity = identity  # who it was, even when refused below (logs, traces)
        if identity.api_key is not None and target is not None:
            allowed_model(identity.api_key, target)
        max_tokens = request.max_tokens or self.default_max_tokens
        # Checked and counted in one step, before any await: the limit is exact.
        if self.max_concurrent_runs is not None and self.admitted >= self.max_concurrent_runs:
            self.metrics.count_refusal("overloaded")
            raise Overloaded("Server is at its limit of concurrent runs; try again shortly", retry_after=1)
        self.admitted += 1
        if identity.api_key is not None:
            self.metrics.count_key_request(identity.api_key.id)
        try:
            if self.limiter is None:
                return Ticket(request, identity, max_tokens=max_tokens, prices=prices,
                              prompt_tokens=await self._count_if_big(request.upstream_messages()))
            return await self._admit_limited(self.limiter, request, identity, max_tokens, prices)
        except BaseException:
            self.admitted -= 1
            raise

    async def _count_if_big(self, messages: list[Message]) -> int | None:
        """A big prompt's tokens, counted off the event loop now (a small one's are left to the run)."""
        bound = upper_bound(messages)
        return None if self.prompt_counter.is_small(bound) else await self.prompt_counter.count(messages, bound)

    async def _admit_limited(self, limiter: Limiter, request: PromptRequest, identity: Identity,
                             max_tokens: int, prices: Prices | None = None) -> Ticket:
        # The prompt as the model sees it: its messages (one user message) in their chat template.
        messages = request.upstream_messages()
        # A key with limits of its own is held to them instead of the defaults (same admission).
        api_key = identity.api_key
        own_limits = api_key.rate_limits or None if api_key is not None else None
        bound = upper_bound(messages)
        if self.prompt_counter.is_small(bound):
            prompt_tokens = self.counter.count_messages(messages)
            admission = self._admitted(await self._limit(limiter, identity, prompt_tokens, own_limits, max_tokens,
                                                         prices), identity)
            return self._ticket(request, identity, admission, prompt_tokens, max_tokens, prices)
        # A big prompt is held to its bound first: a full request limit refuses it uncounted.
        admission = await self._limit(limiter, identity, bound, own_limits, max_tokens, prices)
        if not admission.allowed and not admission.too_many_concurrent and not _request_limit_full(admission):
            # Only a token or spend limit refused the bound: the exact count may still fit.
            prompt_tokens = await self.prompt_counter.count(messages, bound)
            admission = self._admitted(await self._limit(limiter, identity, prompt_tokens, own_limits, max_tokens,
                                                         prices), identity)
            return self._ticket(request, identity, admission, prompt_tokens, max_tokens, prices)
        ticket = self._ticket(request, identity, self._admitted(admission, identity), None, max_tokens, prices)
        try:
            ticket.prompt_tokens = await self.prompt_counter.count(messages, bound)
        except BaseException:
            self._record(ticket, 0)  # the client left while its prompt was counted
            raise
        if ticket.budget is not None and ticket.max_tokens is not None:
            ticket.budget = ticket.prompt_tokens + ticket.max_tokens  # the reservation held the bound
        return ticket

    async def _limit(self, limiter: Limiter, identity: Identity, prompt_tokens: int, own_limits: Sequence[Limit] | None,
                     max_tokens: int, prices: Prices | None) -> Admission:
        """The limiter's decision, the run priced by ``prices`` (403 ``model_not_priced`` under a
        spend limit without them)."""
        try:
            if prices is None:
                return await limiter.admit(identity.key, prompt_tokens, own_limits, max_tokens=max_tokens)
            return await limiter.admit(identity.key, prompt_tokens, own_limits, max_tokens=max_tokens,
                                       quote=prices.quote(prompt_tokens))
        except ApiError as exc:
            if exc.code == "model_not_priced":
                self.metrics.count_refusal(exc.code)
            raise

    def _admitted(self, admission: Admission, identity: Identity) -> Admission:
        """``admission`` when it was allowed; else the refusal (429) it stands for."""
        if admission.too_many_concurrent:
            self.metrics.count_refusal("too_many_concurrent")
            raise TooManyConcurrent(f"{identity.key} already has as many runs in flight as allowed; "
                                    "wait for one to end")
        if not admission.allowed:
            retry_after = max(1, int(math.ceil(admission.retry_after)))
            if admission.spend_limited:
                self.metrics.count_refusal("spend_limited")
                raise SpendLimited(f"Spend limit reached for {identity.key}; retry in {retry_after} s",
                                   retry_after=retry_after, states=admission.states)
            self.metrics.count_refusal("rate_limited")
            raise RateLimited(f"Rate limit exceeded for {identity.key}; retry in {retry_after} s",
                              retry_after=retry_after, states=admission.states)
        return admission

    @staticmethod
    def _ticket(request: PromptRequest, identity: Identity, admission: Admission, prompt_tokens: int | None,
                max_tokens: int, prices: Prices | None = None) -> Ticket:
        spend = admission.reserved_nanos
        if admission.max_tokens is None:  # no token or spend limit applies
            return Ticket(request, identity, admission, prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                          prices=prices)
        budget = admission.reserved_tokens if admission.holds_tokens else None
        return Ticket(request, identity, admission, prompt_tokens=prompt_tokens, max_tokens=admission.max_tokens,
                      budget=budget, prices=prices, spend=spend)

    async def run(self, ticket: Ticket, target: Target, events: RunEvents) -> RunResult:
        """Run an admitted prompt; the tokens it used are recorded however it ends."""
        if ticket.prices is None and ticket.spend is None:  # admitted without its target: priced now
            ticket.prices = prices_of(target)
        meter = UsageMeter(self.counter, admitted_prompt_tokens=ticket.prompt_tokens,
                           max_tokens=ticket.max_tokens, budget=ticket.budget, prices=ticket.prices,
                           spend=ticket.spend)
        task = asyncio.current_task()
        assert task is not None
        self.lifecycle.runs.add(task)
        started = time.time()
        status = "failed"
        result: RunResult | None = None
        if ticket.trace is not None and ticket.trace.model is None:
            ticket.trace.model = target.name
        try:
            ticket.result = result = await target.run(ticket.request, meter=meter, events=events)
            status = "completed"
        except BackendError as exc:
            self.metrics.count_backend_error(exc.code)
            raise
        except (ClientGone, asyncio.CancelledError):
            status = "cancelled"
            raise
        except ApiError:
            raise
        except Exception as exc:
            log.exception("run of %s failed", target.name)
            self.metrics.count_backend_error(BackendError.code)
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.lifecycle.runs.discard(task)
            # A run that failed before it made anything cost nothing (the upstream billed nothing).
            nothing = status == "failed" and meter.first_text_at is None and not meter.finished.total_tokens
            ticket.deployment, ticket.attempts = meter.deployment, meter.attempts
            if meter.deployment is not None:  # billed at the answering deployment's (a priced fallback too)
                billed = getattr(target, "deployment_prices", None)
                ticket.prices = (billed(meter.deployment) if callable(billed) else None) or ticket.prices
            usage = self._measure(ticket, meter, nothing)
            if usage.cost_nanos:
                self.metrics.count_cost(model_name(target, result), ticket.deployment, usage.cost_nanos)
            if not nothing:
                self.metrics.genai.observe(model_name(target, result), ticket.deployment, usage.prompt_tokens,
                                           usage.completion_tokens, ticket.first_token_seconds,
                                           time.monotonic() - meter.started_at)
            settlement = self.finish(ticket, usage.total_tokens, usage.cost_nanos or 0)
            if self.ledger is not None:
                self._write_ledger(self.ledger, ticket, target, meter, status, result, started)
        if settlement is not None:
            await asyncio.shield(settlement)
        assert result is not None
        if usage.cost_nanos is not None:  # every dialect renders cost_usd from the result's usage
            result.usage = result.usage.costing(usage.cost_nanos)
        return result

    def finish(self, ticket: Ticket, total_tokens: int = 0, cost_nanos: int = 0) -> asyncio.Task[None] | None:
        """Give back an admitted request's place and settle its reservations to ``total_tokens``
        (and ``cost_nanos`` under a spend limit).

        :meth:`run` does it when the run ends, however it ends; a handler calls it (with 0)
        for a ticket whose run never started (the client left first). Only the first call counts.
        """
        if ticket.finished:
            return None
        ticket.finished = True
        self.admitted -= 1
        return self._record(ticket, total_tokens, cost_nanos)

    def _measure(self, ticket: Ticket, meter: UsageMeter, nothing: bool = False) -> Usage:
        """What the run used (counted once; ``nothing`` for a run that failed before making
        anything) and, with prices, what it cost: into the ticket and the metrics."""
        usage = Usage() if nothing else meter.total
        if ticket.prices is not None:
            usage.cost_nanos = ticket.prices.cost_nanos(usage.prompt_tokens, usage.cached_tokens,
                                                        usage.completion_tokens)
        ticket.usage = usage
        self.metrics.count_tokens(ticket.identity.kind, usage.prompt_tokens, usage.completion_tokens)
        if ticket.identity.api_key is not None:
            self.metrics.count_key_tokens(ticket.identity.api_key.id, usage.prompt_tokens, usage.completion_tokens)
        if meter.first_text_at is not None:
            ticket.first_token_seconds = meter.first_text_at - meter.started_at
            self.metrics.observe_first_chunk(ticket.first_token_seconds)
        return usage

    def _write_ledger(self, ledger: UsageLedger, ticket: Ticket, target: Target, meter: UsageMeter, status: str,
                      result: RunResult | None, started: float) -> None:
        """The run's line in the usage ledger (never raises: the run's answer matters more)."""
        try:
            api_key = ticket.identity.api_key
            ledger.record(ledger_entry(
                request_id=ticket.request_id or "req_" + secrets.token_hex(12), user=ticket.identity.key, key_id=api_key.id if api_key else None,
                model=model_name(target, result), deployment=ticket.deployment, route=ticket.route, status=status,
                finish_reason=None if result is None else result.finish_reason, usage=ticket.usage or Usage(),
                ttft=None if meter.first_text_at is None else meter.first_text_at - meter.started_at,
                started=started, attempts=ticket.attempts))
        except Exception:
            log.exception("could not write the usage of %s to the ledger", ticket.request_id)

    def _record(self, ticket: Ticket, total: int, cost_nanos: int = 0) -> asyncio.Task[None] | None:
        """Settle the reservation with the real total in a task the run's cancellation cannot stop."""
        limiter = self.limiter
        if limiter is None or ticket.admission is None:
            return None
        if ticket.spend is None:  # no spend limit: the limiter settles tokens only (any Limiter will do)
            if limiter.settle_now(ticket.admission, total):
                return None  # the memory store settles at once: no task needed
        elif limiter.settle_now(ticket.admission, total, cost_nanos):
            return None
        return self.lifecycle.settle_later(self._settle(limiter, ticket.admission, ticket, total, cost_nanos))

    async def _settle(self, limiter: Limiter, admission: Admission, ticket: Ticket, total_tokens: int,
                      cost_nanos: int = 0) -> None:
        try:
            if ticket.spend is None:
                await limiter.settle(admission, total_tokens)
            else:
                await limiter.settle(admission, total_tokens, cost_nanos)
        except Exception:
            log.warning("could not record %d tokens for %s", total_tokens, ticket.identity.key, exc_info=True)


def _request_limit_full(admission: Admission) -> bool:
    """True when a request limit (not a token one) refused ``admission``."""
    return any(state.limit.unit == "request" and state.used >= state.limit.value for state in admission.states)

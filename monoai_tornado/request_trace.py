"""Request ids and W3C trace context: what ties one request's answer, logs, ledger and traces together.

Every prompt gets a :class:`RequestTrace`: its request id (the client's ``X-Request-Id`` when
that is a short token, else one made here) and the client's ``traceparent`` / ``tracestate``
when valid. Handlers echo the id on every answer; :meth:`Pipeline.admit` makes the trace the
*current* one (a context variable), so that everything the run does below it (the backend's
upstream request, log lines) finds it without being handed it: :func:`upstream_headers` gives
the headers an upstream request carries.

OpenTelemetry (:mod:`monoai_tornado.otel`, optional) plugs in through :class:`Tracing`; when it
is off, nothing here imports it and a trace is only these few strings.
"""
from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Coroutine, Mapping, Protocol, TypeVar

from .ids import SerialIds

if TYPE_CHECKING:
    from .backends.base import Backend, CallOptions
    from .identity import Identity

__all__ = ["REQUEST_ID_HEADER", "RequestTrace", "Tracing", "CallSpan", "current_trace", "upstream_headers",
           "request_id_from", "valid_traceparent"]

#: The header a request id comes in and goes out by (HTTP answers and upstream requests).
REQUEST_ID_HEADER = "X-Request-Id"
#: A client's request id is kept when it is 1 to 128 of these (no spaces, quotes or controls).
_TOKEN = re.compile(r"[A-Za-z0-9._:/+=@~-]{1,128}")
#: ``version-traceid-parentid-flags`` (W3C Trace Context, level 1), lower-case hex.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_MAX_TRACESTATE = 512

T = TypeVar("T")


#: New request ids: unique, not secret (an id opens nothing), so no system call per request.
_new_request_id = SerialIds("")


def request_id_from(given: str | None) -> str:
    """The client's id when it is a short printable token, else a new one (32 hex digits)."""
    if given is not None and _TOKEN.fullmatch(given):
        return given
    return _new_request_id()


def valid_traceparent(value: str | None) -> str | None:
    """``value`` when it is a traceparent a tracer may continue, else None (W3C rules: version
    ``ff`` and all-zero ids are invalid; a version 00 header has nothing after its flags)."""
    if not value:
        return None
    value = value.strip()
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return value


class CallSpan(Protocol):
    """The span of one upstream attempt (a model call), as :func:`~monoai_tornado.calls.call_model` sees it."""

    traceparent: str | None

    def end(self, outcome: Any, error: BaseException | None) -> None:
        """The call ended with ``outcome`` (a CallOutcome), or failed with ``error``."""


class Tracing(Protocol):
    """What the pipeline asks of a tracer (the OpenTelemetry one is :class:`monoai_tornado.otel.OtelTracing`)."""

    def start_request(self, trace: "RequestTrace") -> None:
        """Open the request's span (continuing the client's traceparent) into ``trace.span``."""

    def start_call(self, trace: "RequestTrace", backend: Backend, options: CallOptions | None) -> CallSpan | None:
        """A child span of the request's for one model call; None when the request is not sampled."""

    def end_request(self, trace: "RequestTrace", status: int | str, ticket: Any) -> None:
        """Close the request's span with what the request came to (status, usage, cost...);
        ``ticket`` is the pipeline's Ticket (None when never admitted), read by ``run_facts``."""

    def shutdown(self) -> None:
        """Send the spans still buffered and stop (at the application's end)."""


@dataclass(eq=False)
class RequestTrace:
    """One request's id and trace context; ``span`` is the tracer's own (None when not traced)."""

    request_id: str
    #: The client's traceparent and tracestate, when valid (continued and passed upstream).
    traceparent: str | None = None
    tracestate: str | None = None
    #: The tracer, and its span for this request, when OpenTelemetry is on.
    tracing: Tracing | None = None
    span: Any = None
    #: The traceparent of the model call in flight (a child span's), when traced.
    call_traceparent: str | None = None
    #: What the request is, for the span's name and attributes (``chat``, the model asked for).
    operation: str = "chat"
    model: str | None = None
    #: Who asked (an :class:`~monoai_tornado.identity.Identity`), once known, even when refused.
    identity: Identity | None = None
    ended: bool = False

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], request_id: str | None = None) -> "RequestTrace":
        """The trace of a request with these headers (``request_id``: one already chosen)."""
        parent = valid_traceparent(headers.get("traceparent"))
        state = headers.get("tracestate") if parent is not None else None
        if state is not None and (len(state) > _MAX_TRACESTATE or not state.isprintable()):
            state = None
        return cls(request_id or request_id_from(headers.get(REQUEST_ID_HEADER)), parent, state)

    def upstream_headers(self) -> dict[str, str]:
        """The headers an upstream request made for this request carries."""
        headers = {REQUEST_ID_HEADER: self.request_id}
        parent = self.call_traceparent or self.traceparent
        if parent is not None:
            headers["traceparent"] = parent
            if self.tracestate is not None:
                headers["tracestate"] = self.tracestate
        return headers

    def traced_call(self, backend: Backend, options: CallOptions | None,
                    call: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        """``call`` (a model call's coroutine), inside a child span when this request is traced."""
        if self.tracing is None or self.span is None:
            return call
        return self._in_span(backend, options, call)

    async def _in_span(self, backend: Backend, options: CallOptions | None, call: Coroutine[Any, Any, T]) -> T:
        assert self.tracing is not None
        span = self.tracing.start_call(self, backend, options)
        if span is None:
            return await call
        outer, self.call_traceparent = self.call_traceparent, span.traceparent
        try:
            outcome = await call
        except BaseException as exc:
            span.end(None, exc)
            raise
        finally:
            self.call_traceparent = outer
        span.end(outcome, None)
        return outcome


#: The trace of the request being served in this task (set at admission, inherited by the run).
current_trace: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar("monoai_request_trace",
                                                                                    default=None)


def upstream_headers() -> dict[str, str]:
    """The request id and trace headers for an upstream request made now (none outside a request)."""
    trace = current_trace.get()
    return {} if trace is None else trace.upstream_headers()

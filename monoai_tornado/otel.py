"""OpenTelemetry traces named by the GenAI semantic conventions (``--otel``, ``MONOAI_OTEL=1``).

Imported only when tracing is asked for (``pip install 'monoai_tornado[otel]'``). Each prompt
is a SERVER span ``chat {model}`` (continuing the client's ``traceparent``), and each model
call of its run (an upstream attempt) a CLIENT child span whose context goes upstream as the
``traceparent`` header. Attributes follow the GenAI conventions (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``gen_ai.response.finish_reasons``, ``server.address``) plus ours under
``monoai.*`` (user, key id, deployment, cost, limited, request id).

Everything else is OpenTelemetry's standard configuration: the OTLP/HTTP exporter reads
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``), ``..._HEADERS`` and friends; the
sampler ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (default: every trace, or as the
client's traceparent says); the batch processor ``OTEL_BSP_*``; the service ``OTEL_SERVICE_NAME``
(default ``monoai_tornado``). A request the sampler drops costs one non-recording span; its
client's ``traceparent``, if any, goes upstream unchanged.
"""
from __future__ import annotations

import asyncio
import os
import urllib.parse
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .backends.base import Backend, CallOptions
from .calls import CallOutcome
from .request_trace import RequestTrace
from .run_facts import facts_of, field_of

__all__ = ["OtelTracing", "default_provider"]

_propagator = TraceContextTextMapPropagator()
#: WebSocket outcomes that are the server's failure (as a 5xx is on HTTP).
_SERVER_FAILURES = frozenset({"internal_error", "backend_error", "backend_timeout", "upstream_busy",
                              "limiter_unavailable", "key_store_unavailable", "overloaded", "shutting_down"})


def default_provider(service_name: str = "monoai_tornado") -> TracerProvider:
    """A provider exporting by OTLP/HTTP in batches, configured by the ``OTEL_*`` variables."""
    attributes = {} if _service_named_by_env() else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _service_named_by_env() -> bool:
    return bool(os.environ.get("OTEL_SERVICE_NAME")) or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")


def _traceparent(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class _CallSpan:
    """The CLIENT span of one model call (an upstream attempt)."""

    def __init__(self, span: Span, backend: Backend) -> None:
        self.span = span
        self.backend = backend
        self.traceparent: str | None = _traceparent(span)

    def end(self, outcome: CallOutcome | None, error: BaseException | None) -> None:
        span = self.span
        span.set_attribute("gen_ai.response.model", str(self.backend.name))
        if isinstance(error, asyncio.CancelledError):  # the client left, or the server is stopping
            span.set_attribute("monoai.cancelled", True)
        elif error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(StatusCode.ERROR, str(error)[:200])
        elif outcome is not None:
            usage = outcome.usage
            span.set_attributes({"gen_ai.usage.input_tokens": usage.prompt_tokens,
                                 "gen_ai.usage.output_tokens": usage.completion_tokens,
                                 "gen_ai.response.finish_reasons": [outcome.finish_reason]})
        span.end()


class OtelTracing:
    """The :class:`~monoai_tornado.request_trace.Tracing` of OpenTelemetry's SDK."""

    def __init__(self, provider: TracerProvider | None = None, service_name: str = "monoai_tornado") -> None:
        self.provider = provider or default_provider(service_name)
        self.tracer = self.provider.get_tracer("monoai_tornado")
        self._servers: dict[int, dict[str, Any]] = {}

    def start_request(self, trace: RequestTrace) -> None:
        context = None
        if trace.traceparent is not None:
            carrier = {"traceparent": trace.traceparent}
            if trace.tracestate is not None:
                carrier["tracestate"] = trace.tracestate
            context = _propagator.extract(carrier)
        span = self.tracer.start_span(trace.operation, context=context, kind=SpanKind.SERVER)
        if span.is_recording():  # else not sampled: nothing more to do (the client's traceparent goes on as is)
            span.set_attributes({"gen_ai.operation.name": trace.operation, "monoai.request_id": trace.request_id})
            trace.span = span

    def start_call(self, trace: RequestTrace, backend: Backend, options: CallOptions | None) -> _CallSpan | None:
        name = str(backend.name)
        attributes: dict[str, Any] = {"gen_ai.operation.name": trace.operation, "gen_ai.request.model": name,
                                      "gen_ai.provider.name": str(backend.provider), **self._server(backend)}
        for field, attribute in (("max_tokens", "gen_ai.request.max_tokens"),
                                 ("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p")):
            value = field_of(options, field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[attribute] = value
        span = self.tracer.start_span(f"{trace.operation} {name}", context=set_span_in_context(trace.span),
                                      kind=SpanKind.CLIENT, attributes=attributes)
        return _CallSpan(span, backend)

    def _server(self, backend: Backend) -> dict[str, Any]:
        """``server.address`` and ``server.port`` of a backend with a ``base_url`` (cached)."""
        known = self._servers.get(id(backend))
        if known is None:
            known = {}
            base_url = getattr(backend, "base_url", None)
            if isinstance(base_url, str):
                parts = urllib.parse.urlsplit(base_url)
                if parts.hostname:
                    known["server.address"] = parts.hostname
                    known["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
            if len(self._servers) < 1024:
                self._servers[id(backend)] = known
        return known

    def end_request(self, trace: RequestTrace, status: int | str, ticket: Any) -> None:
        span = trace.span
        if span is None:
            return
        facts = facts_of(ticket, trace)
        requested = field_of(field_of(ticket, "request"), "model") or trace.model
        if requested:
            span.update_name(f"{trace.operation} {requested}")
        values: dict[str, Any] = {
            "gen_ai.request.model": requested, "gen_ai.response.model": facts.model,
            "gen_ai.usage.input_tokens": facts.prompt_tokens, "gen_ai.usage.output_tokens": facts.completion_tokens,
            "gen_ai.server.time_to_first_token": facts.ttft_seconds, "monoai.user": facts.user,
            "monoai.key_id": facts.key_id, "monoai.deployment": facts.deployment, "monoai.cost_usd": facts.cost_usd,
            "monoai.limited": status in (429, "rate_limited", "too_many_concurrent", "spend_limited"),
        }
        if facts.finish_reason is not None:
            values["gen_ai.response.finish_reasons"] = [facts.finish_reason]
        if isinstance(status, int):
            values["http.response.status_code"] = status
            failed = status >= 500
        else:
            values["monoai.outcome"] = status
            failed = status in _SERVER_FAILURES
        if failed:
            values["error.type"] = str(status)
            span.set_status(StatusCode.ERROR)
        span.set_attributes({key: value for key, value in values.items() if value is not None})
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()

"""What a finished request came to, read once for the access log, traces and metrics.

The ticket and the run's result change shape as features land (a typed result, routing's
deployment, money's cost); :func:`facts_of` reads them defensively, so that a field not known
yet is None rather than an error.
"""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["RunFacts", "facts_of", "field_of"]


class RunFacts(NamedTuple):
    """One request's facts; None where not known (refused before running, or not measured)."""

    request_id: str | None = None
    user: str | None = None
    key_id: str | None = None
    model: str | None = None
    deployment: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    ttft_seconds: float | None = None


def field_of(value: Any, name: str) -> Any:
    """``value[name]`` or ``value.name``, whichever it has; None otherwise."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _cost(ticket: Any, usage: Any, result: Any) -> float | None:
    for holder in (usage, ticket, field_of(result, "usage")):
        cost = field_of(holder, "cost_usd")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            return float(cost)
        nano = field_of(holder, "cost_nanos")
        if isinstance(nano, int) and not isinstance(nano, bool):
            return nano / 1e9
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def facts_of(ticket: Any, trace: Any = None) -> RunFacts:
    """The facts of ``ticket`` (a :class:`~monoai_tornado.pipeline.Ticket`), or of a request
    never admitted (None) from its ``trace``: who it was, when known."""
    if ticket is None:
        identity = field_of(trace, "identity")
        if identity is None:
            return RunFacts(request_id=field_of(trace, "request_id"))
        api_key = identity.api_key
        return RunFacts(request_id=field_of(trace, "request_id"), user=identity.key,
                        key_id=None if api_key is None else api_key.id)
    identity = ticket.identity
    api_key = identity.api_key
    result = ticket.result
    usage = ticket.usage
    trace = ticket.trace
    asked = None if trace is None else trace.model
    model = field_of(field_of(result, "model"), "name")
    finish = field_of(result, "finish_reason")
    deployment = field_of(result, "deployment") or field_of(ticket, "deployment")
    if deployment is not None and not isinstance(deployment, str):  # a deployment object (routing): its id
        deployment = field_of(deployment, "id")
    return RunFacts(
        request_id=ticket.request_id or None,
        user=identity.key,
        key_id=None if api_key is None else api_key.id,
        model=model if isinstance(model, str) and model else asked,
        deployment=deployment if isinstance(deployment, str) else None,
        finish_reason=finish if isinstance(finish, str) else None,
        prompt_tokens=_int(field_of(usage, "prompt_tokens")),
        completion_tokens=_int(field_of(usage, "completion_tokens")),
        total_tokens=_int(field_of(usage, "total_tokens")),
        cost_usd=_cost(ticket, usage, result),
        ttft_seconds=ticket.first_token_seconds,
    )

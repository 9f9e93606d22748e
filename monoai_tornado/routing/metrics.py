"""Per-deployment metrics in the Prometheus text format (this process's figures)."""
from __future__ import annotations

from typing import Iterator

from ..metrics import LATENCY_BUCKETS
from ..prom_text import escape_label, histogram_lines
from .router import Router
from .state import Deployment, Histogram


def _pairs(deployment: Deployment, **more: str) -> str:
    pairs = {"model": deployment.name, "deployment": deployment.id, **more}
    return ",".join(f'{key}="{escape_label(value)}"' for key, value in pairs.items())


def _labels(deployment: Deployment, **more: str) -> str:
    return "{" + _pairs(deployment, **more) + "}"


def _histogram(name: str, deployment: Deployment, histogram: Histogram) -> Iterator[str]:
    return histogram_lines(name, _pairs(deployment), LATENCY_BUCKETS, histogram.counts, histogram.total)


def deployment_metrics(router: Router) -> Iterator[str]:
    """Attempts by outcome, in flight, time to first token and duration, tokens, per deployment."""
    deployments = router.deployments
    yield "# HELP monoai_deployment_attempts_total Calls tried on a deployment, by outcome."
    yield "# TYPE monoai_deployment_attempts_total counter"
    for deployment in deployments:
        for outcome, count in sorted(deployment.stats.attempts.items()):
            yield f"monoai_deployment_attempts_total{_labels(deployment, outcome=outcome)} {count}"
    yield "# HELP monoai_deployment_in_flight Calls in flight on a deployment."
    yield "# TYPE monoai_deployment_in_flight gauge"
    for deployment in deployments:
        yield f"monoai_deployment_in_flight{_labels(deployment)} {deployment.in_flight}"
    yield "# HELP monoai_deployment_up 1 when the deployment takes calls, 0 while cooling down or disabled."
    yield "# TYPE monoai_deployment_up gauge"
    for deployment in deployments:
        yield f"monoai_deployment_up{_labels(deployment)} {1 if deployment.state() == 'ok' else 0}"
    for name, help_text, attribute in (
            ("monoai_deployment_first_token_seconds", "Seconds from a call's start to its first event.", "first_token"),
            ("monoai_deployment_duration_seconds", "Seconds a call to a deployment took.", "duration")):
        yield f"# HELP {name} {help_text}"
        yield f"# TYPE {name} histogram"
        for deployment in deployments:
            yield from _histogram(name, deployment, getattr(deployment.stats, attribute))
    yield "# HELP monoai_deployment_tokens_total Tokens a deployment reported, by type."
    yield "# TYPE monoai_deployment_tokens_total counter"
    for deployment in deployments:
        yield f"monoai_deployment_tokens_total{_labels(deployment, type='prompt')} {deployment.stats.prompt_tokens}"
        yield (f"monoai_deployment_tokens_total{_labels(deployment, type='completion')} "
               f"{deployment.stats.completion_tokens}")

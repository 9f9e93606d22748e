"""Prometheus metrics, written by hand in the text exposition format (no dependency).

Why by hand: the handful of counters, gauges and one histogram below need no client library,
and a server meant to be deployed lightweight at the edge should not pull one in. Figures are
per process; with ``--processes N`` scrape each worker or aggregate in Prometheus.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Callable, Iterable

from .genai_metrics import GenAIMetrics
from .prom_text import escape_label, histogram_lines

#: Upper bounds (seconds) of the first-chunk latency histogram.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{escape_label(value)}"' for key, value in labels.items())
    return "{" + inner + "}" if inner else ""


class Metrics:
    """The server's counters; gauges are read from live state when scraped."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.tokens: dict[tuple[str, str], int] = defaultdict(int)
        self.refusals: dict[str, int] = defaultdict(int)
        self.backend_errors: dict[str, int] = defaultdict(int)
        #: By API key id (never the key): prompts presented and tokens used.
        self.key_requests: dict[str, int] = defaultdict(int)
        self.key_tokens: dict[tuple[str, str], int] = defaultdict(int)
        #: Nano-dollars spent, by (model, deployment): integers, shown in USD.
        self.cost: dict[tuple[str, str], int] = defaultdict(int)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        #: More families, rendered at scrape time (each returns its exposition lines).
        self.sections: list[Callable[[], Iterable[str]]] = []
        #: Tokens, time to first token and duration by model, named by the GenAI conventions.
        self.genai = GenAIMetrics()
        self.sections.append(self.genai.render)

    def count_request(self, endpoint: str, status: int | str) -> None:
        self.requests[(endpoint, str(status))] += 1

    def count_tokens(self, user_kind: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.tokens[(user_kind, "prompt")] += prompt_tokens
        self.tokens[(user_kind, "completion")] += completion_tokens

    def count_key_request(self, key_id: str) -> None:
        self.key_requests[key_id] += 1

    def count_key_tokens(self, key_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.key_tokens[(key_id, "prompt")] += prompt_tokens
        self.key_tokens[(key_id, "completion")] += completion_tokens

    def count_cost(self, model: str, deployment: str | None, nanos: int) -> None:
        """A priced run's cost (nano-dollars) for ``model`` on ``deployment`` (``""``: none)."""
        self.cost[(model, deployment or "")] += nanos

    def count_refusal(self, reason: str) -> None:
        self.refusals[reason] += 1

    def count_backend_error(self, code: str) -> None:
        self.backend_errors[code] += 1

    def observe_first_chunk(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge read at scrape time."""
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        """The text exposition format, version 0.0.4."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples)

        family("monoai_requests_total", "counter", "Requests (and WebSocket prompts) by endpoint and status.",
               (f"monoai_requests_total{_labels(endpoint=e, status=s)} {n}" for (e, s), n in sorted(self.requests.items())))
        family("monoai_tokens_total", "counter", "Tokens used, by user kind (user or ip) and type.",
               (f"monoai_tokens_total{_labels(user_kind=k, type=t)} {n}" for (k, t), n in sorted(self.tokens.items())))
        family("monoai_rate_limit_refusals_total", "counter", "Prompts refused before running, by reason.",
               (f"monoai_rate_limit_refusals_total{_labels(reason=r)} {n}" for r, n in sorted(self.refusals.items())))
        family("monoai_backend_errors_total", "counter", "Runs that ended in a backend error, by code.",
               (f"monoai_backend_errors_total{_labels(code=c)} {n}" for c, n in sorted(self.backend_errors.items())))
        if self.key_requests:
            family("monoai_api_key_requests_total", "counter", "Prompts presented with an API key, by key id.",
                   (f"monoai_api_key_requests_total{_labels(key_id=k)} {n}" for k, n in sorted(self.key_requests.items())))
            family("monoai_api_key_tokens_total", "counter", "Tokens used with an API key, by key id and type.",
                   (f"monoai_api_key_tokens_total{_labels(key_id=k, type=t)} {n}"
                    for (k, t), n in sorted(self.key_tokens.items())))
        if self.cost:
            family("monoai_cost_usd_total", "counter", "USD spent on priced models, by model and deployment.",
                   (f"monoai_cost_usd_total{_labels(model=m, deployment=d)} {n / 1e9:.9f}"
                    for (m, d), n in sorted(self.cost.items())))
        for name, (help_text, read) in sorted(self.gauges.items()):
            family(name, "gauge", help_text, [f"{name} {read()}"])
        family("monoai_first_chunk_seconds", "histogram", "Seconds from the start of a run to its first chunk.",
               histogram_lines("monoai_first_chunk_seconds", "", LATENCY_BUCKETS, self.latency_counts,
                               self.latency_sum))
        for section in self.sections:
            out.extend(section())
        return "\n".join(out) + "\n"

"""Prometheus metrics named by the OpenTelemetry GenAI semantic conventions, per model and deployment.

The conventions' instruments, as an OpenTelemetry collector would expose them to Prometheus:

* ``gen_ai_client_token_usage`` (histogram of tokens per run, ``gen_ai_token_type`` input or
  output; its ``_sum`` is the token counter);
* ``gen_ai_server_time_to_first_token_seconds`` (histogram: from the run's start to its first text);
* ``gen_ai_server_request_duration_seconds`` (histogram: the whole run);

labelled ``gen_ai_operation_name`` (``chat``), ``gen_ai_request_model`` (the model served, or
``agent/NAME``) and ``deployment`` (routing's deployment id, ``""`` without routing). Buckets
are the conventions' advice. Figures are this process's, like the rest of ``/metrics``.
"""
from __future__ import annotations

import bisect
from typing import Iterator

from .prom_text import escape_label, histogram_lines

__all__ = ["GenAIMetrics", "TOKEN_BUCKETS", "TTFT_BUCKETS", "DURATION_BUCKETS"]

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def lines(self, name: str, labels: str) -> Iterator[str]:
        return histogram_lines(name, labels, self.bounds, self.counts, self.total)


Key = tuple[str, str]  # (model, deployment)

_FAMILIES = (
    ("gen_ai_client_token_usage", "Tokens a run used, by token type (input, output); _sum counts them."),
    ("gen_ai_server_time_to_first_token_seconds", "Seconds from a run's start to its first text."),
    ("gen_ai_server_request_duration_seconds", "Seconds a run took, from its start to its end."),
)


class GenAIMetrics:
    """The runs' tokens, time to first token and duration by model and deployment."""

    def __init__(self) -> None:
        self.input_tokens: dict[Key, _Histogram] = {}
        self.output_tokens: dict[Key, _Histogram] = {}
        self.first_token: dict[Key, _Histogram] = {}
        self.duration: dict[Key, _Histogram] = {}

    def observe(self, model: str, deployment: str | None, input_tokens: int, output_tokens: int,
                first_token: float | None, duration: float) -> None:
        """One finished run of ``model`` (on ``deployment``, when routed)."""
        key = (model, deployment or "")
        tokens = self.input_tokens.get(key)
        if tokens is None:
            tokens = self.input_tokens[key] = _Histogram(TOKEN_BUCKETS)
            self.output_tokens[key] = _Histogram(TOKEN_BUCKETS)
            self.first_token[key] = _Histogram(TTFT_BUCKETS)
            self.duration[key] = _Histogram(DURATION_BUCKETS)
        tokens.observe(input_tokens)
        self.output_tokens[key].observe(output_tokens)
        if first_token is not None:
            self.first_token[key].observe(first_token)
        self.duration[key].observe(duration)

    def render(self) -> Iterator[str]:
        """The three families in the text exposition format (nothing before the first run)."""
        if not self.input_tokens:
            return
        keys = sorted(self.input_tokens)
        labels = {key: f'gen_ai_operation_name="chat",gen_ai_request_model="{escape_label(key[0])}",'
                       f'deployment="{escape_label(key[1])}"' for key in keys}
        for (name, help_text), series in zip(_FAMILIES, ((self.input_tokens, self.output_tokens),
                                                         (self.first_token,), (self.duration,))):
            yield f"# HELP {name} {help_text}"
            yield f"# TYPE {name} histogram"
            for key in keys:
                if len(series) == 2:
                    yield from series[0][key].lines(name, labels[key] + ',gen_ai_token_type="input"')
                    yield from series[1][key].lines(name, labels[key] + ',gen_ai_token_type="output"')
                else:
                    yield from series[0][key].lines(name, labels[key])

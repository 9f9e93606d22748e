"""Schemathesis against the live ``/openapi.json``: the document and the server agree, and no
generated request (valid or not) gets a 5xx. Examples per operation are bounded
(``SCHEMATHESIS_EXAMPLES``, default 25)."""
from __future__ import annotations

import itertools
import os
from typing import Any, Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from monoai_tornado import Application, DemoBackend  # noqa: E402
from monoai_tornado.agents import default_agents  # noqa: E402
from monoai_tornado.ratelimit import Limit, RateLimiter  # noqa: E402
from monoai_tornado.usage import TokenCounter  # noqa: E402
from tests.support.threaded_server import ThreadedServer  # noqa: E402

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
#: Operations whose valid requests depend on rules between fields that the document states in
#: words, not in JSON Schema (``tool_choice`` needs ``tools``, a ``tool`` message answers a call
#: of the assistant before it, ...): their generated "valid" cases are not all valid. Their invalid
#: cases are still checked here, and tests/test_openai_front.py and tests/test_fuzz.py cover them.
CROSS_FIELD_RULES = {("/v1/chat/completions", "positive")}


@pytest.fixture(scope="module")
def live_schema() -> Iterator[Any]:
    backend = DemoBackend(delay=0)
    limiter = RateLimiter([Limit("request", 10**9, "minute")])
    app = Application("Schemathesis", model=backend, agents=default_agents(backend), rate_limiter=limiter,
                      token_counter=TokenCounter(), max_body_size=64 * 1024)
    with ThreadedServer(app) as server:
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/openapi.json")


@pytest.mark.slow
def test_the_server_keeps_its_openapi_document(live_schema: Any) -> None:
    """Every operation, with generated valid data (positive) and invalid data (negative: a
    request the document forbids must be refused), under every check schemathesis runs."""
    failures = []
    operations = 0
    for result, mode in itertools.product(live_schema.get_all_operations(), schemathesis.GenerationMode):
        operation = result.ok()
        if (operation.path, mode.value) in CROSS_FIELD_RULES:
            continue
        operations += 1

        @given(case=operation.as_strategy(mode))
        # derandomize: the same examples every run, so that CI and a developer see the same verdict.
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)
        def check(case: Any) -> None:
            case.call_and_validate(timeout=30)

        try:
            check()
        except Unsatisfiable:
            operations -= 1  # nothing to break in it (no parameters, or only free strings): no negative case
        except (Exception, BaseExceptionGroup) as exc:  # collected, so that one run reports every operation that disagrees
            failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)

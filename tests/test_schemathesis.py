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
from tests.threaded_server import ThreadedServer  # noqa: E402

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))


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
        operations += 1

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
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

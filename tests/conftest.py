"""Shared fixtures: an app with the tests' defaults on a free 127.0.0.1 port, and an HTTP client for it."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import pytest
import tornado.testing
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from monoai_tornado import Application, DemoBackend
from monoai_tornado.usage import TokenCounter, shared_counter
from tests.support import ratelimit_fixtures
from tests.support.browser import CHROMIUM
from tests.support.ci import skip_or_fail
from tests.support.http import AppUrl, Fetch, MakeApp
from tests.support.pages_helpers import with_pages
from tests.support.redis_cluster import LocalCluster, need_cluster, start_cluster


#: Seconds before a minute's end in which no test starts (see ``clear_of_a_minutes_end``).
MINUTE_END_MARGIN = 1.5


@pytest.fixture(autouse=True)
def clear_of_a_minutes_end() -> None:
    """Start no test in the last ``MINUTE_END_MARGIN`` seconds of a minute: many hold a user to
    a few requests a minute and then expect a 429, which a fixed window ending between two of
    their requests would turn into a 200 (the longer ones use hour windows). At most 1.5 s of
    waiting, in 2.5 % of the tests."""
    left = 60.0 - time.time() % 60.0
    if left < MINUTE_END_MARGIN:
        time.sleep(left + 0.05)


@pytest.fixture
def need_chromium() -> None:
    """Skip with the reason (locally) or fail (under CI, which must run them) without the browser."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install -y chromium)", "CI=true: the browser tests must run")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the browser is marked ``browser`` (``-m "not browser"`` to leave them out)."""
    for item in items:
        if "need_chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def counter() -> TokenCounter:
    """One token counter for the whole run (loading an encoding takes a moment); the demo model's."""
    return shared_counter()


@pytest.fixture
def serve(io_loop: Any) -> Any:
    """``serve(app)`` starts ``app`` on a free port (in the test's IOLoop) and returns its base URL."""
    servers = []

    def start(app: Any, **settings: Any) -> str:
        sock, port = tornado.testing.bind_unused_port()
        server = app.http_server(**settings) if hasattr(app, "http_server") else app
        server.add_sockets([sock])
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop()
        io_loop.run_sync(server.close_all_connections, timeout=5)


@pytest.fixture
def make_app(counter: TokenCounter) -> MakeApp:
    """``make_app(name="T", **kwargs)``: ``Application(name, **kwargs)`` with the tests' defaults, the
    demo model without delays and the session's token counter (``model=None`` for no model)."""

    def build(name: str = "T", **kwargs: Any) -> Application:
        kwargs.setdefault("model", DemoBackend(delay=0))
        kwargs.setdefault("token_counter", counter)
        # MONOAI_HTTP_PARSER=tornado runs the suite on Tornado's own HTTPServer (the server
        # processes read the same variable as --http-parser)
        kwargs.setdefault("http_parser", os.environ.get("MONOAI_HTTP_PARSER", "auto"))
        return Application(name, **kwargs)

    return build


@pytest.fixture
def app_url(serve: Any, make_app: MakeApp) -> AppUrl:
    """``app_url(name="T", **kwargs)`` serves ``make_app(name, **kwargs)`` on a free 127.0.0.1 port in
    the test's IOLoop (closed after the test) and returns its base URL. ``pages=True`` serves it
    through ``with_pages`` (``pages="/ai"``: mounted under that prefix)."""

    def build(name: str = "T", *, pages: bool | str = False, **kwargs: Any) -> str:
        app = make_app(name, **kwargs)
        if pages is False:
            return str(serve(app))
        return str(serve(with_pages(app, "" if pages is True else pages)))

    return build


@pytest.fixture
def url(app_url: AppUrl) -> str:
    """The base URL of the plain demo app (a test module's own ``url`` fixture overrides it)."""
    return app_url()


@pytest.fixture
def fetch() -> Fetch:
    """``await fetch(url, method=..., body=..., headers=...)`` that never raises for a status."""
    client = AsyncHTTPClient()

    async def do(url: str, method: str = "GET", body: Any = None, **kwargs: Any) -> HTTPResponse:
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if method == "POST" and body is None and "body_producer" not in kwargs:
            body = b""
        kwargs.setdefault("request_timeout", 30)
        return await client.fetch(url, method=method, body=body, raise_error=False,
                                  allow_nonstandard_methods=True, **kwargs)

    return do


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real three-master Redis Cluster, started once for the session (skipped locally,
    failed under CI, without redis-server and redis-cli)."""
    need_cluster()
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest) -> str:
    """The Redis URL of the store under test ("" for memory)."""
    if store_kind == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return ratelimit_fixtures.REDIS_URL if store_kind == "redis" else ""

"""One owner of the server's life: ``Application.aclose`` drains, cancels with a reason, and
closes WebSockets, backends and the limiter."""
from __future__ import annotations

import asyncio

from monoai_tornado.ratelimit import Limit, MemoryStore, RateLimiter
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of
from tests.support.ws_helpers import connect, read, read_until_end, send


class ClosingBackend(ScriptedBackend):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


class ClosingStore(MemoryStore):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_aclose_lets_a_short_run_finish_then_closes_backend_and_limiter(make_app, serve, fetch):
    backend = ClosingBackend(["a", "b", "c"], delay=0.05)
    store = ClosingStore()
    app = make_app(model=backend, rate_limiter=RateLimiter([Limit("request", 10, "minute")], store))
    server = app.http_server()
    url = serve(server)
    answer = asyncio.ensure_future(fetch(url + "/model", "POST", {"prompt": "p", "user_id": "u"}))
    for _ in range(200):
        if app.lifecycle.busy:
            break
        await asyncio.sleep(0.01)
    await app.aclose(timeout=10, server=server)
    response = await answer
    assert response.code == 200 and json_of(response)["response"] == "abc"
    assert backend.closed and store.closed


async def test_aclose_past_its_timeout_stops_runs_with_shutting_down(make_app, serve, fetch):
    backend = ClosingBackend(["x"] * 200, delay=0.05)
    app = make_app(model=backend)
    server = app.http_server()
    url = serve(server)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "slow"})
    assert (await read(ws))["type"] == "chunk"
    answer = asyncio.ensure_future(fetch(url + "/model", "POST", {"prompt": "slow too"}))
    for _ in range(200):
        if app.lifecycle.runs_in_flight == 2:
            break
        await asyncio.sleep(0.01)
    await app.aclose(timeout=0.2, server=server)
    messages = await read_until_end(ws)
    assert messages[-1]["code"] == "shutting_down"
    assert await read(ws) is None and ws.close_code == 1001
    response = await answer
    assert response.code == 503 and json_of(response)["code"] == "shutting_down"
    assert backend.cancelled == 2 and backend.closed
    assert app.lifecycle.runs_in_flight == 0 and not app.lifecycle.sockets

"""The token budget's guarantee, as a property, against real server processes.

For random mixes of concurrent runs of one user over HTTP, server-sent events and WebSocket,
with answers of known length (``--demo-chunks`` / ``--demo-chunk-chars``): the tokens recorded
in the window never exceed the limit by more than one chunk per concurrent run, and once every
run has ended the recorded usage is exactly the sum of the usage the clients were told (nothing
reserved is left behind). On the memory store, on Redis, and on two processes sharing one Redis.
Also: the reservation is returned when a SIGTERM drain stops a run, ``--max-concurrent-runs``
is exact, and ``--concurrency-limit`` holds across processes.
"""
from __future__ import annotations

import asyncio
import json
import signal
import uuid
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.ratelimit_fixtures import REDIS_URL, delete_prefix, need_redis
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from monoai_tornado.usage import shared_counter
from tests.support.http import parse_sse
from tests.support.processes import start_server, stop_server
from tests.support.ws_helpers import connect, read, read_until_end, send

LIMIT = 400
LIMIT_NAME = f"{LIMIT}-tokens-per-3600"
CHUNKS, CHUNK_CHARS = 30, 4
DEMO = ["--demo-chunks", str(CHUNKS), "--demo-chunk-chars", str(CHUNK_CHARS), "--no-agents"]

pytestmark = [pytest.mark.process, pytest.mark.slow]


def chunk_tokens() -> int:
    """Tokens of the largest chunk of the demo's fixed answer."""
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    counter = shared_counter()  # the demo model's, loaded once (this runs once per example)
    pieces = ["".join(alphabet[(i * CHUNK_CHARS + j) % 26] for j in range(CHUNK_CHARS)) for i in range(CHUNKS)]
    return max(counter.count(piece) for piece in pieces)


@pytest.fixture(scope="module", params=["memory", "redis", "two processes"])
def servers(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Base URLs of the servers under test (two sharing one Redis for "two processes")."""
    args = [*DEMO, "--demo-delay", "0.002", "--token-limit", f"{LIMIT}/hour"]
    prefix = f"test:invariant:{uuid.uuid4().hex}:"
    if request.param != "memory":
        need_redis()
        args += ["--redis-url", REDIS_URL, "--redis-prefix", prefix]
    started = [start_server(*args) for _ in range(2 if request.param == "two processes" else 1)]
    yield [base for base, _ in started]
    for _, proc in started:
        stop_server(proc)
    if request.param != "memory":
        delete_prefix(REDIS_URL, prefix)


async def one_run(base: str, transport: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The usage the client was told, or None when the run was refused (429)."""
    client = AsyncHTTPClient()
    if transport == "ws":
        ws = await connect(base, "/model/ws")
        try:
            await send(ws, body)
            end = (await read_until_end(ws, timeout=30))[-1]
        finally:
            ws.close()
        if "error" in end:
            assert end["code"] == "rate_limited", end
            return None
        assert end["type"] == "complete", end
        return end["result"]  # type: ignore[no-any-return]
    path, headers = ("/model/stream", {"Accept": "text/event-stream"}) if transport == "sse" else ("/model", {})
    response: HTTPResponse = await client.fetch(base + path, method="POST", body=json.dumps(body), headers=headers,
                                                raise_error=False, request_timeout=30)
    if response.code == 429:
        assert json.loads(response.body)["code"] == "rate_limited"
        return None
    assert response.code == 200, response.body
    if transport == "sse":
        name, data = parse_sse(response.body)[-1]
        assert name == "complete", (name, data)
        return data["result"]  # type: ignore[no-any-return]
    return json.loads(response.body)  # type: ignore[no-any-return]


async def usage_of(base: str, user: str) -> tuple[int, int]:
    stats = json.loads((await AsyncHTTPClient().fetch(f"{base}/rate-limit/stats/{user}")).body)
    return stats["usage"][LIMIT_NAME], stats["reserved"][LIMIT_NAME]


async def scenario(bases: list[str], runs: list[tuple[int, str, int | None]]) -> None:
    user = f"u{uuid.uuid4().hex[:12]}"
    bodies = []
    for _, _, max_tokens in runs:
        body: dict[str, Any] = {"prompt": "count along", "user_id": user}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        bodies.append(body)
    tasks = [asyncio.ensure_future(one_run(bases[server % len(bases)], transport, body))
             for (server, transport, _), body in zip(runs, bodies)]
    bound = LIMIT + len(runs) * chunk_tokens()  # one chunk past its cap per concurrent run
    samples = []
    while not all(task.done() for task in tasks):
        samples.append((await usage_of(bases[0], user))[0])
        await asyncio.sleep(0.005)
    results = [await task for task in tasks]
    assert all(sample <= bound for sample in samples), (samples, bound)
    told = [result for result in results if result is not None]
    assert told, "the first run always fits"
    assert all(result["finish_reason"] in ("stop", "length") for result in told)
    for _ in range(200):  # settlements of the last runs may still be on their way to Redis
        used, reserved = await usage_of(bases[-1], user)
        if reserved == 0:
            break
        await asyncio.sleep(0.01)
    assert reserved == 0
    assert used == sum(result["usage"]["total_tokens"] for result in told) <= bound


RUNS = st.lists(
    st.tuples(st.integers(0, 1), st.sampled_from(["json", "sse", "ws"]), st.one_of(st.none(), st.integers(1, 150))),
    min_size=1, max_size=8,
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=RUNS)
def test_recorded_tokens_stay_within_one_chunk_per_run_of_the_limit_and_match_what_clients_were_told(
    servers: list[str], runs: list[tuple[int, str, int | None]]
) -> None:
    asyncio.run(asyncio.wait_for(scenario(servers, runs), 120))


def run_then_stop(scenario: Any, procs: list[Any], prefix: str) -> None:
    """Run ``scenario`` (bounded), then stop the servers and delete their Redis keys."""
    try:
        asyncio.run(asyncio.wait_for(scenario, 60))
    finally:
        for proc in procs:
            stop_server(proc)
        delete_prefix(REDIS_URL, prefix)


async def read_json(ws: Any) -> dict[str, Any]:
    message = await read(ws, timeout=30)
    assert message is not None, "the server closed the socket"
    return message  # type: ignore[no-any-return]


def test_a_run_stopped_by_a_sigterm_drain_returns_its_unused_reservation() -> None:
    need_redis()
    prefix = f"test:drain:{uuid.uuid4().hex}:"
    args = [*DEMO, "--demo-delay", "0.05", "--token-limit", f"{LIMIT}/hour", "--redis-url", REDIS_URL,
            "--redis-prefix", prefix]
    base, proc = start_server(*args, "--drain-timeout", "0.3")
    reader, reader_proc = start_server(*args)  # a second process on the same Redis reads the figures

    async def scenario() -> None:
        ws = await connect(base, "/model/ws")
        await send(ws, {"prompt": "count along", "user_id": "drained", "max_tokens": 300})
        assert (await read_json(ws))["type"] == "chunk"
        assert (await usage_of(reader, "drained"))[1] > 300  # the prompt and the cap are reserved
        proc.send_signal(signal.SIGTERM)  # drains for 0.3 s, then stops the run
        messages = []
        for _ in range(CHUNKS + 2):
            message = await read_json(ws)
            messages.append(message)
            if "error" in message:
                break
        assert messages[-1]["code"] == "shutting_down"
        # The settlement is written before the process exits (it may still be on its way when the
        # client reads the error): once the server is gone, no reservation is left behind.
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
        used, reserved = await usage_of(reader, "drained")
        assert reserved == 0 and 0 < used < 300  # the prompt and what was made, not the reservation

    run_then_stop(scenario(), [proc, reader_proc], prefix)


def test_of_10_simultaneous_requests_exactly_max_concurrent_runs_run_and_8_get_503() -> None:
    base, proc = start_server(*DEMO, "--demo-delay", "0.05", "--max-concurrent-runs", "2")

    async def scenario() -> list[HTTPResponse]:
        client = AsyncHTTPClient(max_clients=20)
        return list(await asyncio.gather(*(
            client.fetch(base + "/model", method="POST", body=json.dumps({"prompt": "x"}), raise_error=False,
                         request_timeout=30) for _ in range(10))))

    try:
        responses = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        stop_server(proc)
    assert sorted(r.code for r in responses) == [200] * 2 + [503] * 8
    refused = [r for r in responses if r.code == 503]
    assert all(json.loads(r.body)["code"] == "overloaded" and r.headers["Retry-After"] for r in refused)


def test_a_concurrency_limit_of_1_holds_across_two_processes_sharing_redis() -> None:
    need_redis()
    prefix = f"test:slots:{uuid.uuid4().hex}:"
    args = [*DEMO, "--demo-delay", "0.05", "--concurrency-limit", "1", "--redis-url", REDIS_URL,
            "--redis-prefix", prefix]
    (first, first_proc), (second, second_proc) = start_server(*args), start_server(*args)

    async def scenario() -> None:
        ws = await connect(first, "/model/ws")
        await send(ws, {"prompt": "long", "user_id": "alice"})
        assert (await read_json(ws))["type"] == "chunk"  # alice runs on the first process
        client = AsyncHTTPClient()
        again = await client.fetch(second + "/model", method="POST", raise_error=False,
                                   body=json.dumps({"prompt": "again", "user_id": "alice"}))
        assert again.code == 429 and json.loads(again.body)["code"] == "too_many_concurrent"
        other = await client.fetch(second + "/model", method="POST", raise_error=False,
                                   body=json.dumps({"prompt": "other", "user_id": "bob"}))
        assert other.code == 200
        ws.close()

    run_then_stop(scenario(), [first_proc, second_proc], prefix)

"""The spend limit's guarantee, as a property, against real server processes.

For random prices (drawn once per server), random spend limits (one API key per example, its
own ``spend_limits``), random completion caps and 50 to 60 concurrent runs of one user over
HTTP, server-sent events and WebSocket, with answers of known length (``--demo-chunks``): the
money billed in the window never exceeds the limit by more than one chunk's cost per
concurrent run, and once every run has ended it equals the sum of the ``cost_usd`` the clients
were told (nothing reserved is left behind). On the memory store, on Redis, and on two
processes sharing one Redis. The largest overshoot seen is printed at the end (``-s``).
"""
from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from monoai_tornado.money import Prices
from monoai_tornado.usage import shared_counter
from tests.support.http import parse_sse
from tests.support.processes import start_server, stop_server
from tests.support.ratelimit_fixtures import REDIS_URL, delete_prefix, need_redis
from tests.support.ws_helpers import connect, read_until_end, send

CHUNKS, CHUNK_CHARS = 200, 4
DEFAULT_CAP = 40
DEMO = ["--demo-chunks", str(CHUNKS), "--demo-chunk-chars", str(CHUNK_CHARS), "--no-agents", "--demo-delay", "0.002",
        "--default-max-tokens", str(DEFAULT_CAP)]
ADMIN = "money-admin"
PROMPT = "count along"

pytestmark = [pytest.mark.process, pytest.mark.slow]

#: Across every example of the module: runs made, and the largest overshoot (nano-dollars, and
#: in chunks of the run's price).
FIGURES: dict[str, Any] = {"examples": 0, "runs": 0, "admitted": 0, "refused": 0, "overshoot_nanos": 0,
                           "overshoot_chunks": 0.0}


def chunk_tokens() -> int:
    """Tokens of the largest chunk of the demo's fixed answer."""
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    counter = shared_counter()
    pieces = ["".join(alphabet[(i * CHUNK_CHARS + j) % 26] for j in range(CHUNK_CHARS)) for i in range(CHUNKS)]
    return max(counter.count(piece) for piece in pieces)


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    print(f"\nmoney invariant: {FIGURES}")


@pytest.fixture(scope="module", params=["memory", "redis", "two processes"])
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[list[str], Prices]]:
    """Base URLs of the servers under test (two sharing one Redis for "two processes"), and
    the prices they charge (random, drawn once per server set)."""
    rng = random.Random()
    price_in, price_out = round(rng.uniform(0.05, 20), 3), round(rng.uniform(0.05, 60), 3)
    args = [*DEMO, "--price-input", str(price_in), "--price-output", str(price_out), "--admin-token", ADMIN]
    prefix = f"test:money:{uuid.uuid4().hex}:"
    if request.param == "memory":
        args += ["--keys-file", str(request.getfixturevalue("tmp_path_factory").mktemp("keys") / "keys.json")]
    else:
        need_redis()
        args += ["--redis-url", REDIS_URL, "--redis-prefix", prefix, "--keys-redis"]
    started = [start_server(*args) for _ in range(2 if request.param == "two processes" else 1)]
    yield [base for base, _ in started], Prices.per_million(price_in, price_out)
    for _, proc in started:
        stop_server(proc)
    if request.param != "memory":
        delete_prefix(REDIS_URL, prefix)


async def call(base: str, path: str, body: Any = None, **headers: str) -> HTTPResponse:
    return await AsyncHTTPClient().fetch(base + path, method="POST" if body is not None else "GET",
                                         body=None if body is None else json.dumps(body), headers=headers,
                                         raise_error=False, request_timeout=60)


async def one_run(base: str, key: str, transport: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The usage the client was told, or None when the run was refused (429 spend_limited)."""
    if transport == "ws":
        ws = await connect(base, "/model/ws", subprotocols=["monoai", f"bearer.{key}"])
        try:
            await send(ws, body)
            end = (await read_until_end(ws, timeout=60))[-1]
        finally:
            ws.close()
        if "error" in end:
            assert end["code"] == "spend_limited", end
            return None
        assert end["type"] == "complete", end
        return end["result"]["usage"]  # type: ignore[no-any-return]
    sse = transport == "sse"
    headers = {"Authorization": f"Bearer {key}", **({"Accept": "text/event-stream"} if sse else {})}
    response = await call(base, "/model/stream" if sse else "/model", body, **headers)
    if response.code == 429:
        assert json.loads(response.body)["code"] == "spend_limited"
        return None
    assert response.code == 200, response.body
    if sse:
        name, data = parse_sse(response.body)[-1]
        assert name == "complete", (name, data)
        return data["result"]["usage"]  # type: ignore[no-any-return]
    return json.loads(response.body)["usage"]  # type: ignore[no-any-return]


async def spend_of(base: str, user: str, name: str) -> tuple[int, int]:
    """(billed, reserved) nano-dollars of ``user`` under the spend limit ``name``."""
    stats = json.loads((await call(base, f"/rate-limit/stats/{user}", Authorization=f"Bearer {ADMIN}")).body)
    spend = stats["spend"][name]
    return round(spend["used_usd"] * 1e9), round(spend["reserved_usd"] * 1e9)


async def scenario(bases: list[str], prices: Prices, limit_runs: float, runs: list[tuple[int, str, int | None]]) -> None:
    user = f"u{uuid.uuid4().hex[:12]}"
    prompt_tokens = shared_counter().count_messages([{"role": "user", "content": PROMPT}])
    full_run = prices.cost_nanos(prompt_tokens, 0, DEFAULT_CAP)  # what a run without max_tokens reserves
    limit_nanos = max(prices.cost_nanos(prompt_tokens, 0, 1), round(limit_runs * full_run))
    text = f"{limit_nanos // 10**9}.{limit_nanos % 10**9:09d}/hour"
    created = await call(bases[0], "/admin/keys", {"user": user, "spend_limits": [text]},
                         Authorization=f"Bearer {ADMIN}")
    assert created.code == 201, created.body
    key = json.loads(created.body)["key"]
    name = f"{text.split('/')[0].rstrip('0').rstrip('.')}-usd-per-3600"
    bodies = [{"prompt": PROMPT, **({"max_tokens": cap} if cap is not None else {})} for _, _, cap in runs]
    tasks = [asyncio.ensure_future(one_run(bases[server % len(bases)], key, transport, body))
             for (server, transport, _), body in zip(runs, bodies)]
    chunk_cost = chunk_tokens() * prices.output // 1000 + 1  # nano-dollars, rounding included
    bound = limit_nanos + len(runs) * chunk_cost  # one chunk past its cap per concurrent run
    samples = []
    while not all(task.done() for task in tasks):
        samples.append(sum(await spend_of(bases[0], user, name)))  # billed and reserved: what the store holds
        await asyncio.sleep(0.01)
    told = [usage for usage in [await task for task in tasks] if usage is not None]
    assert all(sample <= bound for sample in samples), (samples, bound)
    for _ in range(300):  # settlements of the last runs may still be on their way to Redis
        billed, reserved = await spend_of(bases[-1], user, name)
        if reserved == 0:
            break
        await asyncio.sleep(0.01)
    assert reserved == 0
    told_nanos = sum(round(usage["cost_usd"] * 1e9) for usage in told)
    assert billed == told_nanos <= bound
    for usage in told:  # each cost is the prices applied to the tokens told
        assert round(usage["cost_usd"] * 1e9) == prices.cost_nanos(usage["prompt_tokens"], 0, usage["completion_tokens"])
    over = max(billed, *samples) - limit_nanos
    FIGURES["examples"] += 1
    FIGURES["runs"] += len(runs)
    FIGURES["admitted"] += len(told)
    FIGURES["refused"] += len(runs) - len(told)
    if over > FIGURES["overshoot_nanos"]:
        FIGURES["overshoot_nanos"] = over
        FIGURES["overshoot_chunks"] = round(over / chunk_cost, 3)


RUNS = st.lists(
    st.tuples(st.integers(0, 1), st.sampled_from(["json", "sse", "ws"]), st.one_of(st.none(), st.integers(1, 40))),
    min_size=50, max_size=55,
)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(limit_runs=st.floats(0.5, 40), runs=RUNS)
def test_billed_money_stays_within_one_chunk_per_run_of_the_limit_and_equals_the_costs_clients_were_told(
    servers: tuple[list[str], Prices], limit_runs: float, runs: list[tuple[int, str, int | None]]
) -> None:
    bases, prices = servers
    asyncio.run(asyncio.wait_for(scenario(bases, prices, limit_runs, runs), 180))

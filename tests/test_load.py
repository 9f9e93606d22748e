"""Load: 2,000 WebSocket connections streaming at once from one server process."""
from __future__ import annotations

import asyncio
import resource
import time

import pytest

from tests.support.processes import start_server, stop_server
from tests.support.ws_helpers import chunks_of, connect, read_until_end, send

pytestmark = [pytest.mark.process, pytest.mark.slow]

CONNECTIONS = 2000
CHUNKS, CHUNK_CHARS = 16, 4


def raise_file_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def expected_answer() -> str:
    from monoai_tornado.backends.demo import DemoBackend

    return "".join(DemoBackend(chunks=CHUNKS, chunk_chars=CHUNK_CHARS).answer_pieces([]))


async def test_2000_concurrent_websocket_streams_all_complete_in_order():
    if raise_file_limit(3 * CONNECTIONS + 500) < 2 * CONNECTIONS + 200:
        pytest.skip("cannot raise the open-file limit enough for 2,000 connections")
    base, server = start_server("--no-agents", "--log-level", "warning", "--demo-delay", "0.01",
                                "--demo-chunks", str(CHUNKS), "--demo-chunk-chars", str(CHUNK_CHARS))
    try:
        sockets = []
        for start in range(0, CONNECTIONS, 200):  # open in batches, as real clients trickle in
            sockets += await asyncio.gather(*(connect(base, "/model/ws") for _ in range(start, start + 200)))
        started = time.monotonic()
        for i, ws in enumerate(sockets):
            await send(ws, {"prompt": f"load {i}", "user_id": f"u{i}"})
        results = await asyncio.gather(*(read_until_end(ws, timeout=120) for ws in sockets))
        elapsed = time.monotonic() - started
        answer = expected_answer()
        complete = [m for m in results if m and m[-1].get("type") == "complete"]
        assert len(complete) == CONNECTIONS
        for messages in complete:
            assert chunks_of(messages) == answer == messages[-1]["result"]["response"]
        print(f"\n{CONNECTIONS} concurrent WebSocket streams of {CHUNKS} chunks completed in {elapsed:.2f} s")
        for ws in sockets:
            ws.close()
    finally:
        stop_server(server, timeout=30)

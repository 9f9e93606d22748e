"""Graceful shutdown of a real server process: SIGTERM drains running streams, then exits 0."""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time

import pytest

from tests.support import processes
from tests.support.ws_helpers import connect, read, read_until_end, send

pytestmark = pytest.mark.process


def start_server(*args: str) -> tuple[str, subprocess.Popen]:
    return processes.start_server("--no-agents", "--log-level", "warning", *args)


def refuses_connections(base: str) -> bool:
    host, port = base.rsplit("/", 1)[1].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return False
    except OSError:
        return True


async def wait_exit(proc: subprocess.Popen, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        await asyncio.sleep(0.05)
    return None


@pytest.fixture
def cleanup():
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_sigterm_lets_100_running_streams_finish(cleanup):
    base, proc = start_server("--demo-delay", "0.03", "--drain-timeout", "20")
    cleanup.append(proc)
    sockets = [await connect(base, "/model/ws") for _ in range(100)]
    for i, ws in enumerate(sockets):
        await send(ws, {"prompt": f"stream {i} of the drain test"})
    for ws in sockets:
        assert (await read(ws))["type"] == "chunk"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    refused = False
    for _ in range(40):
        if refuses_connections(base):
            refused = True
            break
        await asyncio.sleep(0.025)
    results = await asyncio.gather(*(read_until_end(ws, timeout=20) for ws in sockets))
    assert refused, "a new connection was accepted during the drain"
    for i, messages in enumerate(results):
        assert messages[-1]["type"] == "complete", messages[-1]
        assert f"stream {i} of the drain test" in messages[-1]["result"]["response"]
    for ws in sockets:
        assert await read(ws) is None  # then the server closes the socket...
        assert ws.close_code == 1001  # ...as "going away"
    assert await wait_exit(proc, 20) == 0
    assert time.monotonic() - started < 20


async def test_runs_past_the_drain_timeout_are_stopped_with_an_error(cleanup):
    base, proc = start_server("--demo-delay", "0.5", "--drain-timeout", "0.5")
    cleanup.append(proc)
    ws = await connect(base, "/model/ws")
    await send(ws, {"prompt": "a very slow answer that cannot finish in time"})
    assert (await read(ws))["type"] == "chunk"
    proc.send_signal(signal.SIGTERM)
    messages = await read_until_end(ws, timeout=15)
    assert messages[-1]["code"] == "shutting_down"
    assert await read(ws) is None and ws.close_code == 1001
    assert await wait_exit(proc, 15) == 0


async def test_processes_share_the_port_and_all_stop_on_sigterm(cleanup, fetch):
    base, proc = start_server("--processes", "2")
    cleanup.append(proc)
    for _ in range(10):
        assert (await fetch(base + "/model", "POST", {"prompt": "p"})).code == 200
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 20) == 0
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children == []
    assert refuses_connections(base)

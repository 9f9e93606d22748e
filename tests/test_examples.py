"""The examples work as their docstrings say."""
from __future__ import annotations

import asyncio
import time
import importlib.util
import pathlib
import subprocess
import sys
import urllib.request

import pytest
from tornado.httpclient import HTTPClientError

from tests.support.http import json_of
from tests.support.processes import free_port, stop_server, wait_for

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_embed_example_serves_under_ai_and_ws_client_reads_the_stream(fetch):
    port = free_port()
    server = asyncio.ensure_future(load("embed_in_tornado_app").main(port))
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if (await fetch(base + "/", request_timeout=1)).code == 200:
                    break
            except HTTPClientError:  # a timeout on a loaded machine: try again
                pass
            await asyncio.sleep(0.05)
        assert json_of(await fetch(base + "/"))["app"] == "my own Tornado app"
        assert "embedded" in json_of(await fetch(base + "/ai/model", "POST", {"prompt": "embedded"}))["response"]
        result = await load("ws_client").ask(f"ws://127.0.0.1:{port}/ai/model/ws", "over the socket", None)
        assert "over the socket" in result["response"]
    finally:
        server.cancel()


@pytest.mark.slow  # takes a second or more
async def test_rate_limited_example_holds_ten_requests_a_minute(serve, fetch):
    url = serve(load("rate_limited_app").build_app())
    left_in_minute = 60 - time.time() % 60  # its windows are whole minutes: 11 requests must share one
    if left_in_minute < 5:
        await asyncio.sleep(left_in_minute + 0.1)
    codes = [(await fetch(url + "/model", "POST", {"prompt": "p", "user_id": "admin_3"})).code for _ in range(11)]
    assert codes == [200] * 10 + [429]
    stats = json_of(await fetch(url + "/rate-limit/stats/user_3"))
    assert stats["usage"]["10-per-60"] == 10
    assert 0 < stats["usage"]["10000-tokens-per-3600"] < 10_000


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=60, cwd=EXAMPLES.parent)


@pytest.fixture
def example_server():
    procs = []

    def start(name: str, ready: str = "/health") -> str:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=EXAMPLES.parent)
        procs.append(proc)
        wait_for(f"http://127.0.0.1:{port}{ready}")
        return str(port)

    yield start
    for proc in procs:
        stop_server(proc)


@pytest.mark.process
def test_examples_serve_on_the_port_given(example_server):
    for name, ready in [("agent_with_tools", "/agents"), ("rate_limited_app", "/health"),
                        ("embed_in_tornado_app", "/ai/health")]:
        port = example_server(name, ready)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=10) as response:
            assert response.status == 200


@pytest.mark.process
def test_ws_client_asks_the_server_on_the_port_given(example_server):
    port = example_server("agent_with_tools", "/agents")
    proc = run_example("ws_client", "--port", port, "--agent", "shop", "what is the price of coffee?")
    assert proc.returncode == 0, proc.stderr
    assert "The price_of tool returned 7.9." in proc.stdout and "usage:" in proc.stdout
    assert '[tool] price_of {"item": "coffee"} -> 7.9' in proc.stdout  # the tool's output, not only its call
    proc = run_example("ws_client", "--url", f"http://127.0.0.1:{port}", "over the model")
    assert proc.returncode == 0 and "over the model" in proc.stdout


@pytest.mark.process
def test_ws_client_ends_clearly_on_an_unknown_agent_or_no_server(example_server):
    port = example_server("agent_with_tools", "/agents")
    proc = run_example("ws_client", "--port", port, "--agent", "nosuch", "hi")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0] and "nosuch" in lines[0]
    proc = run_example("ws_client", "--port", str(free_port()), "hi")  # nobody listens there
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "is the server running?" in proc.stderr

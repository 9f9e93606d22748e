"""The examples work as their docstrings say."""
from __future__ import annotations

import asyncio
import importlib.util
import pathlib
import socket

from tests.conftest import json_of

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_embed_example_serves_under_ai_and_ws_client_reads_the_stream(fetch):
    port = free_port()
    server = asyncio.ensure_future(load("embed_in_tornado_app").main(port))
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            if (await fetch(base + "/", request_timeout=1)).code == 200:
                break
            await asyncio.sleep(0.05)
        assert json_of(await fetch(base + "/"))["app"] == "my own Tornado app"
        assert "embedded" in json_of(await fetch(base + "/ai/model", "POST", {"prompt": "embedded"}))["response"]
        result = await load("ws_client").ask(f"ws://127.0.0.1:{port}/ai/model/ws", "over the socket", None)
        assert "over the socket" in result["response"]
    finally:
        server.cancel()


async def test_rate_limited_example_holds_ten_requests_a_minute(serve, fetch):
    url = serve(load("rate_limited_app").build_app())
    codes = [(await fetch(url + "/model", "POST", {"prompt": "p", "user_id": "admin_3"})).code for _ in range(11)]
    assert codes == [200] * 10 + [429]
    stats = json_of(await fetch(url + "/rate-limit/stats/user_3"))
    assert stats["usage"]["10-per-60"] == 10
    assert 0 < stats["usage"]["10000-tokens-per-3600"] < 10_000

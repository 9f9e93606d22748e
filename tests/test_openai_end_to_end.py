"""``python -m monoai_tornado --backend openai`` against a real upstream started by the test."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.http import json_of
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import Servers
from tests.support.ws_helpers import chunks_of, connect, read, read_until_end, send

pytestmark = pytest.mark.process


@pytest.fixture
def server_for():
    servers = Servers("--backend", "openai", "--model", "test", "--no-agents", "--log-level", "warning", capture=True,
                      env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-secret-key-123"})
    yield lambda base_url, *args: servers("--base-url", base_url, *args)
    assert "sk-secret-key-123" not in servers.stop_all()  # the key is never printed


async def test_chunks_reach_the_websocket_before_the_upstream_finishes(server_for):
    async with FakeOpenAI(chunks=["Hello", " from", " the", " upstream"], stall_after=1, stall=None) as upstream:
        base = server_for(upstream.base_url)
        ws = await connect(base, "/model/ws")
        await send(ws, {"prompt": "stream it"})
        first = await read(ws)
        assert first == {"type": "chunk", "content": "Hello"}
        assert not upstream.requests[0].finished  # the upstream is still paused
        assert upstream.requests[0].headers.get("Authorization") == "Bearer sk-secret-key-123"
        upstream.release()
        messages = [first] + await read_until_end(ws)
        result = messages[-1]["result"]
        assert chunks_of(messages) == result["response"] == "Hello from the upstream"
        assert result["model"] == {"provider": "openai-compatible", "name": "test"}
        assert result["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        body = upstream.requests[0].body
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["messages"] == [{"role": "user", "content": "stream it"}]


async def test_closing_the_websocket_aborts_the_upstream_request(server_for):
    async with FakeOpenAI(chunks=["a", "b", "c"], stall_after=1, stall=None) as upstream:
        base = server_for(upstream.base_url)
        ws = await connect(base, "/model/ws")
        await send(ws, {"prompt": "then leave"})
        assert (await read(ws))["type"] == "chunk"
        ws.close()
        await upstream.wait_until(lambda: upstream.closed_early, timeout=5)


async def test_upstream_failures_become_documented_errors(server_for, fetch):
    async with FakeOpenAI(status=500, error_message="model crashed") as upstream:
        # 1.5 s: time for a server that just started to reach the upstream on a loaded machine
        # (0.5 s once timed out in CI), and still half the delay that must time out below
        base = server_for(upstream.base_url, "--backend-timeout", "1.5")
        response = await fetch(base + "/model", "POST", {"prompt": "x"})
        assert response.code == 502 and json_of(response)["code"] == "backend_error"
        assert "500" in json_of(response)["error"]
        ws = await connect(base, "/model/ws")
        await send(ws, {"prompt": "x"})
        assert (await read(ws))["code"] == "backend_error"
        upstream.configure(status=200, first_byte_delay=3)
        response = await fetch(base + "/model", "POST", {"prompt": "x"})
        assert response.code == 504 and json_of(response)["code"] == "backend_timeout"
        upstream.configure(first_byte_delay=0, cut_after=2, usage=None)
        await send(ws, {"prompt": "cut short"})
        messages = await read_until_end(ws)
        assert messages[-1]["code"] == "backend_error"  # the connection stays open...
        upstream.configure(cut_after=None)
        await send(ws, {"prompt": "whole"})
        final = (await read_until_end(ws))[-1]
        assert final["type"] == "complete"  # ...for the next prompt
        assert final["result"]["usage"]["estimated"] is True  # no upstream usage: counted locally


async def test_generation_options_from_the_command_line_reach_the_upstream(server_for, fetch):
    async with FakeOpenAI(chunks=["ok"]) as upstream:
        base = server_for(upstream.base_url, "--max-tokens", "64", "--temperature", "0.3",
                          "--extra-body", '{"top_k": 40, "repeat_penalty": 1.1}')
        response = await fetch(base + "/model", "POST", {"prompt": "x"})
        assert response.code == 200 and json_of(response)["response"] == "ok"
    body = upstream.requests[0].body
    assert (body["max_tokens"], body["temperature"], body["top_k"], body["repeat_penalty"]) == (64, 0.3, 40, 1.1)


@pytest.mark.parametrize("argv", [["--extra-body", "{not json"], ["--extra-body", "[1]"], ["--max-tokens", "0"],
                                  ["--temperature", "-1"], ["--backend-total-timeout", "x"]])
def test_bad_generation_options_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "monoai_tornado", "--backend", "openai", "--base-url",
                           "http://127.0.0.1:9/v1", "--model", "m", *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and f"argument {argv[0]}" in proc.stderr and "Traceback" not in proc.stderr

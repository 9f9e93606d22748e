"""The command line, run as a user runs it: a real process on a free port."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from monoai_tornado.cli import build_parser
from tests.processes import start_server, stop_server


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def run_server():
    procs = []

    def start(*args: str) -> tuple[str, subprocess.Popen]:
        base, proc = start_server(*args, capture=True)
        procs.append(proc)
        return base, proc

    yield start
    for proc in procs:
        stop_server(proc)


def test_serves_the_demo_model_and_exits_cleanly_on_sigterm(run_server):
    base, proc = run_server()
    status, body = post(base + "/model", {"prompt": "hi"})
    assert status == 200
    assert "hi" in body["response"]
    assert isinstance(body["usage"]["total_tokens"], int) and body["usage"]["total_tokens"] > 0
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert base in output  # it printed the URL it serves
    assert "/model/ws" in output  # and the endpoints
    assert "DEMO" in output


def test_demo_chunk_options_shape_every_answer(run_server):
    base, _ = run_server("--demo-delay", "0", "--demo-chunks", "8", "--demo-chunk-chars", "3")
    status, body = post(base + "/model", {"prompt": "anything"})
    assert status == 200
    assert len(body["response"]) == 24


@pytest.mark.parametrize("argv", [["--bogus"], ["--port", "notaport"], ["--port", "70000"],
                                  ["--limit", "5/fortnight"], ["--limit", "abc"], ["--demo-delay", "-1"],
                                  ["--max-body-size", "lots"], ["--trusted-proxy", "not-a-cidr"],
                                  ["--backend", "nope"], ["--user-validator", "nocolon"]])
def test_malformed_options_exit_2_with_usage(argv):
    proc = subprocess.run([sys.executable, "-m", "monoai_tornado", *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_processes_with_memory_limits_are_refused():
    proc = subprocess.run([sys.executable, "-m", "monoai_tornado", "--processes", "2", "--limit", "5/minute"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--redis-url" in proc.stderr


def test_parser_defaults():
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.backend, args.max_body_size) == ("127.0.0.1", 8000, "demo", 1024 * 1024)
    args = build_parser().parse_args(["--max-body-size", "2m", "--limit", "5/minute", "--limit", "100/2hour"])
    assert args.max_body_size == 2 * 1024 * 1024
    assert [limit.window_seconds for limit in args.limit] == [60, 7200]

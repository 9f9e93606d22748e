"""The command line, run as a user runs it: a real process on a free port."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from monoai_tornado.cli import build_parser
from tests.support.processes import call, post, start_server, stop_server

pytestmark = pytest.mark.process  # most tests start the command line


@pytest.fixture
def run_server():
    procs = []

    def start(*args: str, **options) -> tuple[str, subprocess.Popen]:
        base, proc = start_server(*args, capture=True, **options)
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


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monoai_tornado", *argv], capture_output=True, text=True,
                          timeout=30, env=env)


@pytest.mark.parametrize("argv", [["--bogus"], ["--port", "notaport"], ["--port", "70000"],
                                  ["--limit", "5/fortnight"], ["--limit", "abc"], ["--demo-delay", "-1"],
                                  ["--max-body-size", "lots"], ["--trusted-proxy", "not-a-cidr"],
                                  ["--backend", "nope"], ["--user-validator", "nocolon"]])
def test_malformed_options_exit_2_with_one_line(argv):
    proc = run_cli(*argv)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("monoai-tornado: error: ")  # not the usage block
    assert argv[0].lstrip("-").split("-")[0] in proc.stderr  # it names what is wrong
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("argv", "says"), [
    (["--user-validator", "nosuch:fn"], "cannot import 'nosuch'"),
    (["--agents", "nosuch:fn"], "cannot import 'nosuch'"),
    (["--agents", "json:nosuch"], "has no attribute 'nosuch'"),
    (["--user-validator", "json:__doc__"], "is not callable"),
    (["--agents", "json:dumps"], "raised TypeError"),
    (["--agents", "os:getcwd"], "not a list of agents"),
])
def test_options_naming_code_that_cannot_be_used_give_one_line(argv, says):
    proc = run_cli(*argv)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert argv[0] in proc.stderr and argv[1] in proc.stderr and says in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_gives_every_option_its_help_and_default():
    parser = build_parser()
    proc = run_cli("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        assert action.help, f"{action.option_strings[0]} has no help"
        start = text.index(action.option_strings[0] + " ", text.index("options:"))
        described = text[start:start + 400]
        assert "default" in described, f"{action.option_strings[0]}: no default in {described!r}"
    assert "(default: 8000)" in text and "(default: 1m)" in text


def test_version():
    from monoai_tornado import __version__

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"monoai-tornado {__version__}"


def without_redis(tmp_path) -> dict[str, str]:
    """An environment where ``import redis`` fails, as after a plain ``pip install -e .``."""
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "__init__.py").write_text('raise ImportError("redis is not installed (simulated)")\n')
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


@pytest.mark.process
def test_limits_need_no_redis_package(run_server, tmp_path):
    # The README's rate-limit command after the README's install (no redis): limits in memory.
    base, _ = run_server("--limit", "100/minute", "--token-limit", "100000/minute", env=without_redis(tmp_path))
    status, body = post(base + "/model", {"prompt": "hello"})
    assert status == 200 and body["usage"]["total_tokens"] > 0


def test_redis_url_without_the_redis_package_names_the_extra(tmp_path):
    proc = run_cli("--redis-url", "redis://127.0.0.1:6379/0", "--limit", "5/minute", env=without_redis(tmp_path))
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "pip install 'monoai_tornado[redis]'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.process
@pytest.mark.redis
def test_unreachable_redis_is_reported_at_start_and_retried(run_server, tmp_path):
    from tests.support.ratelimit_fixtures import RedisServer, need_redis

    need_redis()  # redis-server must be installed (CI installs it)
    redis = RedisServer(tmp_path)  # not started yet: nothing answers at its URL
    base, proc = run_server("--redis-url", redis.url, "--limit", "5/minute", ready="/")
    status, body = call(base + "/health")
    assert status == 503 and body["limiter"] == "unavailable"
    assert post(base + "/model", {"prompt": "x"})[0] == 503
    redis.start()
    try:
        for _ in range(100):  # the server keeps retrying: /health turns ok without any prompt
            status, body = call(base + "/health")
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200 and body == {"status": "ok", "app": "MonoAI Tornado", "limiter": "ok"}
        assert post(base + "/model", {"prompt": "x"})[0] == 200
    finally:
        output = stop_server(proc)
        redis.stop()
    warnings = [line for line in output.splitlines() if "WARNING" in line and redis.url in line]
    assert len(warnings) == 1, output  # one warning naming the URL and the error
    assert "ConnectionError" in warnings[0] or "refused" in warnings[0].lower()
    assert "available again" in output


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

"""Logs a machine can read: one JSON object per line whatever the user sends, and text lines that
no user id can split or forge."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoai_tornado import Application, DemoBackend
from monoai_tornado.logs import JsonFormatter, TextFormatter
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.processes import call, free_port, wait_for
from tests.test_routing import gateway_of
from tests.support.threaded_server import ThreadedServer

ACCESS_FIELDS = {"time", "level", "logger", "message", "request_id", "method", "path", "route", "status", "user",
                 "key_id", "model", "deployment", "prompt_tokens", "completion_tokens", "tokens", "cost_usd",
                 "duration_ms", "ttft_ms"}
#: User ids a hostile client might send: line breaks, NUL, quotes, escapes, separators, emoji.
NASTY = st.text(alphabet=st.sampled_from(list('a"\\\n\r\x00\x1b\t\u2028\u0085 {}é😀')), min_size=1, max_size=24)


class Captured:
    """Log lines of the ``monoai_tornado`` loggers written by ``formatter`` into a buffer."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.buffer = io.StringIO()
        self.handler = logging.StreamHandler(self.buffer)
        self.handler.setFormatter(formatter)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()

    def wait_for(self, text: str, count: int) -> None:
        """Until ``count`` lines hold ``text`` (a line is written once its answer has left), 5 s at most."""
        for _ in range(500):
            if sum(text in line for line in self.lines()) >= count:
                return
            time.sleep(0.01)


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[Captured]:
    logger = logging.getLogger("monoai_tornado")
    capture = Captured(request.param())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(capture.handler)
    yield capture
    logger.removeHandler(capture.handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    with ThreadedServer(Application("T", model=DemoBackend(delay=0))) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("captured", [JsonFormatter], indirect=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user_id=NASTY)
def test_json_lines_parse_one_by_one_whatever_the_user_id(server: ThreadedServer, captured: Captured,
                                                          user_id: str) -> None:
    captured.buffer.truncate(0)
    captured.buffer.seek(0)
    status, _ = call(f"http://127.0.0.1:{server.port}/model", {"prompt": "hi", "user_id": user_id})
    status_bad, _ = call(f"http://127.0.0.1:{server.port}/model", {"prompt": "", "user_id": user_id})
    assert (status, status_bad) == (200, 400)
    captured.wait_for("monoai_tornado.access", 2)
    records = [json.loads(line) for line in captured.lines()]  # every line is one whole JSON object
    access = [r for r in records if r["logger"] == "monoai_tornado.access"]
    assert len(access) == 2 and all(ACCESS_FIELDS <= set(r) for r in access)
    ok = access[0]
    assert ok["user"] == user_id and ok["status"] == 200 and ok["route"] == "model" and ok["tokens"] > 0
    assert ok["model"] == "monoai-demo" and ok["level"] == "info" and ok["time"].endswith("Z")
    assert access[1]["status"] == 400 and access[1]["level"] == "warning" and access[1]["tokens"] is None


@pytest.mark.parametrize("captured", [TextFormatter], indirect=True)
async def test_text_lines_stay_one_line_each(app_url: Any, fetch: Any, captured: Captured) -> None:
    url = app_url()
    answer = await fetch(url + "/model", method="POST", body={"prompt": "hi", "user_id": "eve\nINFO forged\x00"},
                         headers={"X-Request-Id": "rid-text"})
    assert answer.code == 200
    lines = [line for line in captured.lines() if "monoai_tornado.access" in line]
    assert len(lines) == 1 and "user=eve\\nINFO forged\\x00" in lines[0] and "id=rid-text" in lines[0]


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (the server drains and says "stopped"); what it wrote (the stream read)."""
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out or err or ""


def _serve(*args: str) -> tuple[str, subprocess.Popen[str]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "monoai_tornado", "--port", str(port), "--demo-delay", "0", *args],
                            stdout=subprocess.PIPE if "json" in args else subprocess.DEVNULL,  # JSON: both streams
                            stderr=subprocess.STDOUT if "json" in args else subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/health")
    except AssertionError:
        proc.kill()
        proc.communicate()
        raise
    return base, proc


@pytest.mark.slow
@pytest.mark.process
def test_the_server_logs_json_and_can_leave_out_access_lines() -> None:
    base, proc = _serve("--log-format", "json")
    try:
        assert call(base + "/model", {"prompt": "hi", "user_id": 'q"\n\x00'})[0] == 200
    finally:
        output = _stop(proc)
    records = [json.loads(line) for line in output.splitlines()]  # stdout and stderr: nothing but JSON lines
    assert any("serving on http://127.0.0.1:" in r["message"] for r in records)  # no banner, the log line
    access = [r for r in records if r["logger"] == "monoai_tornado.access" and r["path"] == "/model"]
    assert len(access) == 1 and access[0]["user"] == 'q"\n\x00' and access[0]["status"] == 200
    assert any(r["message"] == "stopped" for r in records)
    base, proc = _serve("--access-log", "off")
    try:
        assert call(base + "/model", {"prompt": "hi"})[0] == 200
    finally:
        output = _stop(proc)
    assert "stopped" in output and "/model" not in output and "/health" not in output


@pytest.mark.parametrize("captured", [JsonFormatter], indirect=True)
async def test_a_routed_priced_run_logs_its_deployment_and_cost(app_url, fetch, captured, tmp_path, counter):
    gateway = gateway_of(tmp_path, '[[models]]\nname = "chat"\nbackend = "demo"\nprice_input = 3\nprice_output = 15\n',
                         counter)
    url = app_url(model=None, gateway=gateway)
    answer = await fetch(url + "/model", method="POST", body={"prompt": "hi", "model": "chat"},
                         headers={"X-Request-Id": "rid-routed"})
    assert answer.code == 200
    [line] = [json.loads(line) for line in captured.lines() if '"monoai_tornado.access"' in line]
    assert line["request_id"] == "rid-routed" and line["model"] == "chat" and line["deployment"] == "chat#1"
    assert line["cost_usd"] == json.loads(answer.body)["usage"]["cost_usd"] > 0 and line["ttft_ms"] >= 0


@pytest.mark.parametrize("captured", [JsonFormatter, TextFormatter], indirect=True)
async def test_a_failed_runs_error_line_names_its_request(app_url, fetch, captured):
    url = app_url(model=ScriptedBackend(failure="crash"))
    answer = await fetch(url + "/model", method="POST", body={"prompt": "hi"}, headers={"X-Request-Id": "rid-crash"})
    assert answer.code == 502 and answer.headers["X-Request-Id"] == "rid-crash"
    errors = [line for line in captured.lines() if "run of scripted failed" in line]
    assert len(errors) == 1
    if errors[0].startswith("{"):
        record = json.loads(errors[0])
        assert record["request_id"] == "rid-crash" and "ZeroDivisionError" in record["exception"]
    else:
        assert errors[0].endswith(" request_id=rid-crash")


class _Writes:
    """A stream that remembers each write."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def test_the_lines_of_one_loop_turn_leave_in_one_write_and_others_at_once() -> None:
    import asyncio

    from monoai_tornado.logs import TextFormatter, TurnBufferedHandler

    stream = _Writes()
    handler = TurnBufferedHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("monoai_tornado.test_turns")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside the loop")
        assert len(stream.writes) == 1 and stream.writes[0].endswith("outside the loop\n")

        async def one_turn() -> list[str]:
            for number in range(3):
                logger.warning("line %d", number)
            held = list(stream.writes)
            await asyncio.sleep(0)  # the turn ends: the lines go out
            await asyncio.sleep(0)
            return held

        held = asyncio.run(one_turn())
        assert held == stream.writes[:1]  # nothing written while the turn ran
        assert len(stream.writes) == 2 and stream.writes[1].count("\n") == 3
        assert [line.split(": ")[-1] for line in stream.writes[1].splitlines()] == ["line 0", "line 1", "line 2"]
        logger.warning("held until the end")

        async def lines_left_at_exit() -> None:
            logger.warning("in a turn that never ends")

        asyncio.run(lines_left_at_exit())
        handler.flush()  # logging.shutdown flushes every handler at exit
        assert stream.writes[-1].endswith("in a turn that never ends\n")
    finally:
        logger.removeHandler(handler)


def _the_servers_own_handler(monkeypatch: Any, formatter: logging.Formatter) -> tuple[_Writes, Any]:
    """The handler ``configure_logging`` installs, alone on the root logger, writing to a
    ``_Writes``; access lines enabled."""
    from monoai_tornado import logs

    stream = _Writes()
    handler = logs.TurnBufferedHandler(stream)
    handler.setFormatter(formatter)
    monkeypatch.setattr(logging.root, "handlers", [handler])
    monkeypatch.setattr(logs, "_installed", handler)
    access = logging.getLogger(logs.ACCESS_LOGGER)
    monkeypatch.setattr(access, "level", logging.INFO)
    access.manager._clear_cache()
    return stream, handler


@pytest.mark.parametrize("formatter", [TextFormatter, JsonFormatter])
def test_an_access_line_written_without_a_record_is_the_line_logging_writes(monkeypatch, formatter) -> None:
    """With the server's own handler alone (what the command line installs), an access line skips
    the logging machinery; anything a user adds (here a filter) puts it back on logging's way,
    and both ways write the same line."""
    from monoai_tornado import logs
    from monoai_tornado.identity import Identity
    from monoai_tornado.request_trace import RequestTrace

    stream, handler = _the_servers_own_handler(monkeypatch, formatter())
    trace = RequestTrace("rid-direct")
    trace.identity = Identity("eve\n", "user", "127.0.0.1")

    def line() -> str:
        logs.log_access(logging.WARNING, method="PO\x00ST", path="/v1/x\u2028y", route="openai_chat", status=404,
                        ticket=None, trace=trace, remote_ip="127.0.0.1", seconds=0.0123)
        handler.flush()
        return stream.writes[-1]

    assert logs._sole_handler(logging.WARNING) == (handler, handler.formatter)
    direct = line()
    seen: list[logging.LogRecord] = []
    handler.addFilter(lambda record: seen.append(record) or True)
    assert logs._sole_handler(logging.WARNING) is None
    logged = line()
    assert len(seen) == 1 and direct.count("\n") == logged.count("\n") == 1
    if formatter is JsonFormatter:
        direct_record, logged_record = json.loads(direct), json.loads(logged)
        assert direct_record.pop("time").endswith("Z") and logged_record.pop("time").endswith("Z")
        assert direct_record == logged_record and direct_record["user"] == "eve\n"
        assert direct_record["path"] == "/v1/x\u2028y" and direct_record["level"] == "warning"
    else:
        assert direct[23:] == logged[23:] and direct[:4].isdigit() and direct[19] == ","
        assert " WARNING monoai_tornado.access: 404 PO\\x00ST /v1/x\\u2028y user=eve\\n tokens=- id=rid-direct 12.30ms" in direct


def test_a_filter_added_while_the_server_runs_sees_the_access_lines_from_the_next_loop_turn(monkeypatch) -> None:
    """Whether an access line may skip logging's machinery is decided once per turn of the event
    loop (the lines of one turn leave together): a handler or filter added later sees the lines of
    the turns after."""
    import asyncio

    from monoai_tornado import logs

    stream, handler = _the_servers_own_handler(monkeypatch, TextFormatter())
    seen: list[str] = []

    def line(path: str) -> None:
        logs.log_access(logging.INFO, method="POST", path=path, route="model", status=200, ticket=None,
                        trace=None, remote_ip="127.0.0.1", seconds=0.001)

    async def turns() -> None:
        line("/first")
        handler.addFilter(lambda record: seen.append(record.getMessage()) or True)
        line("/same-turn")
        await asyncio.sleep(0)  # the turn ends: its lines are written, the decision forgotten
        line("/next-turn")
        await asyncio.sleep(0)

    asyncio.run(turns())
    written = "".join(stream.writes)
    assert all(path in written for path in ("/first", "/same-turn", "/next-turn"))
    assert len(seen) == 1 and "/next-turn" in seen[0]

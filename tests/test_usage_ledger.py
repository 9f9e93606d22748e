"""The usage ledger (``--usage-log``) of real server processes: one whole JSON line per finished
run, however it ended, with the fields API.md Part 3 lists; written before the process exits on
a drain, never half a line after a SIGKILL; and the Redis stream form.
"""
from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from tornado.httpclient import AsyncHTTPClient

from monoai_tornado.money.ledger import FIELDS
from tests.support.processes import call, free_port, start_server, stop_server
from tests.support.ratelimit_fixtures import REDIS_URL, delete_prefix, need_redis
from tests.support.ws_helpers import connect, read, read_until_end, send

pytestmark = [pytest.mark.process, pytest.mark.slow]

PRICED = ["--price-input", "0.15", "--price-output", "0.60", "--no-agents"]


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of the ledger, each parsed whole (a half line fails the test)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the last line is cut"
    entries = [json.loads(line) for line in text.splitlines()]
    for entry in entries:
        assert tuple(entry) == FIELDS
    return entries


def line_count(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


async def wait_for_lines(path: Path, count: int) -> list[dict[str, Any]]:
    for _ in range(500):
        if line_count(path) >= count:
            break
        await asyncio.sleep(0.01)
    return lines_of(path)


def test_a_finished_a_capped_a_cancelled_and_a_failed_run_each_write_one_line(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    base, proc = start_server(*PRICED, "--demo-delay", "0.02", "--usage-log", str(log))
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    failing, failing_proc = start_server("--backend", "openai", "--base-url", dead, "--model", "gone", *PRICED,
                                         "--usage-log", str(log), ready="/v1/models")  # /health: 503, no upstream

    async def scenario() -> None:
        status, done = call(base + "/model", {"prompt": "a whole answer", "user_id": "ann"})
        assert status == 200
        status, capped = call(base + "/model", {"prompt": "cut it short", "user_id": "ann", "max_tokens": 3})
        assert status == 200 and capped["finish_reason"] == "length"
        ws = await connect(base, "/model/ws")
        await send(ws, {"prompt": "stop me", "user_id": "bob"})
        assert (await read(ws))["type"] == "chunk"
        await send(ws, {"type": "cancel"})
        assert (await read_until_end(ws))[-1] == {"type": "cancelled"}
        ws.close()
        status, failed = call(failing + "/model", {"prompt": "nobody answers", "user_id": "cid"})
        assert status == 502, failed
        entries = await wait_for_lines(log, 4)
        assert [(e["user"], e["status"], e["finish_reason"]) for e in entries] == [
            ("ann", "completed", "stop"), ("ann", "completed", "length"), ("bob", "cancelled", None),
            ("cid", "failed", None)]
        whole, cut, cancelled, nothing = entries
        for entry, told in ((whole, done), (cut, capped)):
            assert entry["cost_usd"] == told["usage"]["cost_usd"] > 0
            assert (entry["prompt_tokens"], entry["completion_tokens"]) == (told["usage"]["prompt_tokens"],
                                                                            told["usage"]["completion_tokens"])
            assert entry["route"] == "/model" and entry["model"] == "monoai-demo" and entry["attempts"] == 1
            assert entry["ttft_ms"] is not None and entry["duration_ms"] >= entry["ttft_ms"]
        assert cut["completion_tokens"] <= 3
        assert cancelled["route"] == "/model/ws" and 0 < cancelled["cost_usd"] < whole["cost_usd"]
        assert (nothing["prompt_tokens"], nothing["completion_tokens"], nothing["cost_usd"]) == (0, 0, 0.0)
        assert len({e["request_id"] for e in entries}) == 4

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        stop_server(proc)
        stop_server(failing_proc)


def test_a_run_retried_on_other_deployments_is_one_line_with_its_attempts(tmp_path: Path) -> None:
    log, config = tmp_path / "usage.jsonl", tmp_path / "gateway.toml"
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    config.write_text(f"""
[[models]]
name = "chat"
base_url = "{dead[0]}"
price_input = 1.0
price_output = 2.0

[[models]]
name = "chat"
base_url = "{dead[1]}"
price_input = 1.0
price_output = 2.0

[[models]]
name = "backup"
backend = "demo"
price_input = 0.5
price_output = 1.0

[routing]
retries = 1
fallbacks = {{ chat = ["backup"] }}
""")
    base, proc = start_server("--config", str(config), "--demo-delay", "0", "--no-agents", "--usage-log", str(log))
    try:
        status, result = call(base + "/model", {"prompt": "someone answer", "model": "chat"})
        assert status == 200, result
        (entry,) = asyncio.run(wait_for_lines(log, 1))
        assert (entry["attempts"], entry["model"], entry["status"]) == (3, "backup", "completed")
        assert entry["deployment"] == "backup#1" and entry["cost_usd"] == result["usage"]["cost_usd"] > 0
    finally:
        stop_server(proc)


def test_a_sigterm_drain_writes_a_whole_line_for_each_of_20_streams(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    base, proc = start_server(*PRICED, "--demo-delay", "0.05", "--drain-timeout", "0.3", "--usage-log", str(log))

    async def scenario() -> None:
        sockets = [await connect(base, "/model/ws") for _ in range(20)]
        for i, ws in enumerate(sockets):
            await send(ws, {"prompt": "a long story please " * 5, "user_id": f"s{i}"})
        for ws in sockets:
            assert (await read(ws, timeout=30))["type"] == "chunk"
        proc.send_signal(signal.SIGTERM)  # drains 0.3 s, then stops the runs
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        for ws in sockets:
            ws.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        stop_server(proc)
    entries = lines_of(log)
    assert len(entries) == 20 and {e["user"] for e in entries} == {f"s{i}" for i in range(20)}
    assert all(e["status"] in ("cancelled", "completed") and e["cost_usd"] > 0 for e in entries)


def test_the_ledger_is_whole_json_lines_after_a_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    base, proc = start_server(*PRICED, "--demo-delay", "0", "--usage-log", str(log))

    async def scenario() -> None:
        client = AsyncHTTPClient(max_clients=50)
        body = json.dumps({"prompt": "quick", "user_id": "k"})
        pending = [asyncio.ensure_future(client.fetch(base + "/model", method="POST", body=body, raise_error=False,
                                                      request_timeout=10)) for _ in range(300)]
        await wait_for_lines(log, 20)
        proc.send_signal(signal.SIGKILL)  # in the middle of the burst
        await asyncio.gather(*pending, return_exceptions=True)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        stop_server(proc)
    entries = lines_of(log)  # every line parses; none is cut
    assert len(entries) >= 20 and all(e["user"] == "k" and e["status"] == "completed" for e in entries)


def test_the_redis_ledger_is_a_capped_stream_of_the_same_lines() -> None:
    need_redis()
    prefix = f"test:ledger:{uuid.uuid4().hex}:"
    base, proc = start_server(*PRICED, "--demo-delay", "0", "--redis-url", REDIS_URL, "--redis-prefix", prefix,
                              "--usage-log", "redis", "--usage-log-max", "5")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        told = [call(base + "/model", {"prompt": f"run {i}", "user_id": "r"})[1] for i in range(8)]
        stop_server(proc)  # the drain sends what is queued
        entries = [json.loads(fields[b"json"]) for _, fields in client.xrange(prefix + "usage")]
        assert len(entries) == 5 and all(tuple(entry) == FIELDS for entry in entries)
        assert [e["cost_usd"] for e in entries] == [t["usage"]["cost_usd"] for t in told[-5:]]
    finally:
        stop_server(proc)
        client.close()
        delete_prefix(REDIS_URL, prefix)

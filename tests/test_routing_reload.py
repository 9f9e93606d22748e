"""Reload without dropping a stream (SIGHUP, a changed file), and a deployment's rpm / tpm shared
by two server processes through Redis: real processes, real sockets."""
from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Callable, Iterator

import pytest

from tests.support import ratelimit_fixtures
from tests.support.processes import Servers, call, start_server, stop_server
from tests.support.upstreams import UpstreamProcess
from tests.test_routing_processes import ask, stream_once, wait_until

pytestmark = [pytest.mark.process, pytest.mark.slow]

DEMO = '[[models]]\nname = "chat"\nbackend = "demo"\n'


def model_ids(base: str) -> list[str]:
    return [entry["id"] for entry in call(base + "/v1/models")[1]["data"]]


async def streams_across(port: int, reload: Callable[[], None]) -> list[bool]:
    """20 streams; ``reload()`` once they have all started (each lasts about 2 s)."""
    runs = [asyncio.ensure_future(stream_once(port)) for _ in range(20)]
    await asyncio.sleep(0.5)
    reload()
    return list(await asyncio.gather(*runs))


def test_sighup_while_20_streams_run_finishes_them_and_serves_the_new_models(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(DEMO)
    base, proc = start_server("--config", str(path), "--demo-chunks", "40", "--demo-delay", "0.05",
                              "--no-agents", "--log-level", "warning")
    try:
        assert model_ids(base) == ["chat"]
        port = int(base.rsplit(":", 1)[1])

        def reload() -> None:
            path.write_text(DEMO + '[[models]]\nname = "extra"\nbackend = "demo"\n')
            proc.send_signal(signal.SIGHUP)

        assert asyncio.run(streams_across(port, reload)) == [True] * 20
        assert model_ids(base) == ["chat", "extra"]
        status, body, headers = ask(base, "extra")
        assert status == 200 and body["model"] == "extra" and headers["X-Monoai-Deployment"] == "extra#1"
        assert proc.poll() is None  # SIGHUP did not stop it
    finally:
        stop_server(proc)


def test_a_changed_file_is_noticed_and_an_invalid_one_keeps_the_old(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(DEMO)
    base, proc = start_server("--config", str(path), "--no-agents", "--log-level", "warning", capture=True)
    try:
        path.write_text(DEMO + '[[models]]\nname = "second"\nbackend = "demo"\n')
        wait_until(lambda: "second" in model_ids(base), 10)
        path.write_text(DEMO + '[[models]]\nbackend = "demo"\n')  # no name
        time.sleep(2.5)  # the poll (every second) has read it
        assert model_ids(base) == ["chat", "second"]
    finally:
        output = stop_server(proc)
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "models[1].name: required" in errors[0] and "keeping the previous" in errors[0]


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    ratelimit_fixtures.need_redis()
    prefix = f"monoai-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    ratelimit_fixtures.delete_prefix(ratelimit_fixtures.REDIS_URL, prefix)


@pytest.mark.redis
@pytest.mark.parametrize(("limit", "admitted"), [("rpm = 3", 3), ("tpm = 40", 2)])
def test_two_servers_share_a_deployments_rpm_and_tpm_through_redis(tmp_path, redis_prefix, limit, admitted):
    # tpm: each answer reports 18 tokens; a prompt counts 5 to 22, so 18 + 18 + prompt > 40 after two.
    upstream = UpstreamProcess.start(usage=[11, 7])
    path = tmp_path / "gateway.toml"
    path.write_text(f'[[models]]\nname = "chat"\nbase_url = "{upstream.base_url}"\n{limit}\n')
    servers = Servers("--config", str(path), "--redis-url", ratelimit_fixtures.REDIS_URL, "--redis-prefix",
                      redis_prefix, "--no-agents", "--log-level", "warning")
    try:
        first, second = servers(), servers()
        if time.time() % 60 > 50:  # the minute's window would end during the test
            time.sleep(61 - time.time() % 60)
        answers = []
        for index in range(6):
            answers.append(ask((first, second)[index % 2]))
            time.sleep(0.2)  # the settlement of the last answer reaches Redis first
        assert [status for status, _, _ in answers] == [200] * admitted + [503] * (6 - admitted)
        assert all(body["error"]["code"] == "no_deployment" for status, body, _ in answers if status == 503)
        assert upstream.count() == admitted
    finally:
        servers.stop_all()
        upstream.stop()


def test_the_example_gateway_serves_every_model_on_a_fresh_machine():
    servers = Servers("--config", "examples/gateway.toml", "--log-level", "warning")
    try:
        base = servers()
        assert model_ids(base) == ["chat", "fast", "agent/assistant"]
        status, body = call(base + "/model", {"prompt": "hi", "model": "fast"})
        assert status == 200 and body["model"]["name"] == "fast"
    finally:
        servers.stop_all()


def test_a_reload_applies_the_files_limits_unless_the_command_line_set_them(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[server]\nlimit = ["2/minute"]\n' + DEMO)
    servers = Servers("--config", str(path), "--no-agents", "--log-level", "warning")
    try:
        from_file, fixed = servers(), servers("--limit", "2/minute")
        if time.time() % 60 > 45:  # the minute's window would end during the test
            time.sleep(61 - time.time() % 60)
        for server in (from_file, fixed):
            assert [call(server + "/model", {"prompt": "hi"})[0] for _ in range(3)] == [200, 200, 429]
        path.write_text('[server]\nlimit = ["100/minute"]\n' + DEMO + '[[models]]\nname = "new"\nbackend = "demo"\n')
        for server in (from_file, fixed):
            wait_until(lambda: "new" in model_ids(server), 10)  # reloaded
        assert call(from_file + "/model", {"prompt": "hi"})[0] == 200  # the file's new limit
        assert call(fixed + "/model", {"prompt": "hi"})[0] == 429  # the command line's, as before
    finally:
        servers.stop_all()

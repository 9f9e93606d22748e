"""A gateway of several models in one process: ``model`` chooses on every route, aliases, the
deployment header, /v1/models, /health, the max_concurrent queue, and reload of the file."""
from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from monoai_tornado.backends.base import Backend, CallOptions, EventStream, Message, TextDelta, ToolSchema
from monoai_tornado.backends.demo import DemoBackend
from monoai_tornado.cli import build_parser
from monoai_tornado.config import DeploymentConfig, load_config
from monoai_tornado.errors import BackendError
from monoai_tornado.routing import Gateway
from tests.support.http import json_of, parse_sse
from tests.support.ws_helpers import connect, read_until_end, send

CONFIG = """
[[models]]
name = "chat"
backend = "demo"

[[models]]
name = "chat"
id = "chat-b"
backend = "demo"

[[models]]
name = "fast"
backend = "demo"

[routing]
default_model = "chat"
strategy = "round-robin"
aliases = { "gpt-*" = "fast", "claude-*" = "chat" }
"""


class Counting(Backend):
    """Answers its own id after ``pause`` seconds; remembers the most calls it had at once."""

    provider = "test"

    def __init__(self, name: str, pause: float = 0.0) -> None:
        self.name, self.pause = name, pause
        self.running = self.most = self.calls = 0

    async def stream(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
                     options: CallOptions | None = None) -> EventStream:
        self.running += 1
        self.calls += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.pause)
            yield TextDelta(f"from {self.name}")
        finally:
            self.running -= 1


def gateway_of(tmp_path: Path, text: str, counter: Any, backends: dict[str, Backend] | None = None) -> Gateway:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    parser = build_parser()

    def build(config: DeploymentConfig) -> Backend:
        if backends is not None and config.id in backends:
            return backends[config.id]
        return DemoBackend(delay=0)

    return Gateway(load_config(str(path), parser), build, counter, loader=lambda p: load_config(p, parser))


@pytest.fixture
def gateway(tmp_path: Path, counter: Any) -> Gateway:
    return gateway_of(tmp_path, CONFIG, counter)


@pytest.fixture
def base(app_url: Any, gateway: Gateway) -> str:
    return str(app_url(model=None, gateway=gateway))


async def test_model_chooses_on_part_1_routes_with_aliases_and_the_default(fetch: Any, base: str) -> None:
    for asked, answered, deployment in ((None, "chat", "chat#1"), ("fast", "fast", "fast#1"),
                                       ("gpt-4o", "fast", "fast#1"), ("claude-3-haiku", "chat", "chat-b")):
        body = {"prompt": "hi"} if asked is None else {"prompt": "hi", "model": asked}
        response = await fetch(base + "/model", method="POST", body=body)
        assert response.code == 200
        assert json_of(response)["model"] == {"provider": "demo", "name": answered}
        assert response.headers["X-MonoAI-Deployment"] == deployment


async def test_an_unknown_model_is_404_model_not_found_everywhere(fetch: Any, base: str) -> None:
    response = await fetch(base + "/model", method="POST", body={"prompt": "hi", "model": "gpt4"})
    assert response.code == 404 and json_of(response)["code"] == "model_not_found"
    response = await fetch(base + "/v1/chat/completions", method="POST",
                           body={"model": "mistral", "messages": [{"role": "user", "content": "hi"}]})
    assert response.code == 404 and json_of(response)["error"]["code"] == "model_not_found"
    response = await fetch(base + "/model", method="POST", body={"prompt": "hi", "model": 7})
    assert response.code == 400 and json_of(response)["code"] == "invalid_json"


async def test_a_stream_names_its_deployment_before_the_first_byte(fetch: Any, base: str) -> None:
    response = await fetch(base + "/model/stream", method="POST", body={"prompt": "hi", "model": "fast"},
                           headers={"Accept": "text/event-stream"})
    assert response.code == 200 and response.headers["X-MonoAI-Deployment"] == "fast#1"
    events = parse_sse(response.body)
    assert events[-1][0] == "complete" and events[-1][1]["result"]["model"]["name"] == "fast"
    response = await fetch(base + "/v1/chat/completions", method="POST", body={
        "model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert response.headers["X-MonoAI-Deployment"] == "fast#1"
    first = json.loads(response.body.decode().split("\n\n")[0][len("data: "):])
    assert first["model"] == "fast"  # the model the alias maps to


async def test_websocket_prompts_choose_their_model(base: str) -> None:
    ws = await connect(base, "/model/ws")
    await send(ws, {"prompt": "hi", "model": "fast"})
    assert (await read_until_end(ws))[-1]["result"]["model"]["name"] == "fast"
    await send(ws, {"prompt": "hi", "model": "nope"})
    assert (await read_until_end(ws))[-1]["code"] == "model_not_found"
    await send(ws, {"prompt": "hi"})  # the connection is still open; the default model
    assert (await read_until_end(ws))[-1]["result"]["model"]["name"] == "chat"
    ws.close()


async def test_v1_models_lists_every_model_and_no_alias(fetch: Any, base: str) -> None:
    ids = [entry["id"] for entry in json_of(await fetch(base + "/v1/models"))["data"]]
    assert ids == ["chat", "fast", "agent/assistant"] or ids == ["chat", "fast"]


async def test_health_shows_deployments_and_hides_details_without_the_admin_token(
        fetch: Any, app_url: Any, gateway: Gateway) -> None:
    base = app_url(model=None, gateway=gateway, admin_token="s3cret")
    models = json_of(await fetch(base + "/health"))["models"]
    assert models["chat"] == {"deployments": [{"id": "chat#1", "state": "ok"}, {"id": "chat-b", "state": "ok"}]}
    detailed = json_of(await fetch(base + "/health", headers={"Authorization": "Bearer s3cret"}))["models"]
    assert set(detailed["fast"]["deployments"][0]) == {"id", "state", "in_flight", "latency_ms"}


QUEUED = """
[[models]]
name = "single"
backend = "openai"
base_url = "http://127.0.0.1:1/v1"
max_concurrent = 1

[routing]
queue_timeout = {queue}
"""


async def test_max_concurrent_one_with_a_queue_serves_every_client_in_turn(
        fetch: Any, app_url: Any, tmp_path: Path, counter: Any) -> None:
    single = Counting("single", pause=0.05)
    gateway = gateway_of(tmp_path, QUEUED.format(queue=10), counter, {"single#1": single})
    base = app_url(model=None, gateway=gateway)
    bodies = [{"prompt": f"p{i}"} for i in range(6)]
    answers = await asyncio.gather(*(fetch(base + "/model", method="POST", body=body) for body in bodies))
    assert [answer.code for answer in answers] == [200] * 6
    assert single.most == 1 and single.calls == 6


async def test_without_a_queue_a_full_deployment_is_503_no_deployment(
        fetch: Any, app_url: Any, tmp_path: Path, counter: Any) -> None:
    single = Counting("single", pause=1.0)
    gateway = gateway_of(tmp_path, QUEUED.format(queue=0), counter, {"single#1": single})
    base = app_url(model=None, gateway=gateway)
    first = asyncio.ensure_future(fetch(base + "/model", method="POST", body={"prompt": "a"}))
    for _ in range(500):  # until the first call runs (bounded)
        if single.running:
            break
        await asyncio.sleep(0.01)
    second = await fetch(base + "/model", method="POST", body={"prompt": "b"})
    assert second.code == 503 and json_of(second)["code"] == "no_deployment"
    assert second.headers["Retry-After"] == "1"
    assert (await first).code == 200


async def test_reload_switches_models_and_an_invalid_file_keeps_the_old_ones(
        fetch: Any, base: str, gateway: Gateway, caplog: Any) -> None:
    path = gateway.config.path
    rewrite(path, CONFIG.replace('"fast"', '"faster"'))
    assert gateway.reload()
    ids = [entry["id"] for entry in json_of(await fetch(base + "/v1/models"))["data"]]
    assert "faster" in ids and "fast" not in ids
    rewrite(path, CONFIG + '\n[[models]]\nname = "broken"\nweight = -3\nbackend = "demo"\n')
    with caplog.at_level(logging.ERROR, logger="monoai_tornado.routing"):
        assert not gateway.reload()
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "models[3].weight" in errors[0]
    response = await fetch(base + "/model", method="POST", body={"prompt": "hi", "model": "faster"})
    assert response.code == 200  # still the previous configuration


def rewrite(path: str, text: str) -> None:
    Path(path).write_text(text)


class Failing(Backend):
    """Fails before its first event, as an upstream answering 502 does."""

    provider = "test"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
                     options: CallOptions | None = None) -> EventStream:
        self.calls += 1
        raise BackendError("upstream answered 502 Bad Gateway", extra={"upstream_status": 502})
        yield TextDelta("never")


PRICED = """
[[models]]
name = "chat"
backend = "openai"
base_url = "http://127.0.0.1:1/v1"
price_input = 100
price_output = 100

[[models]]
name = "backup"
backend = "openai"
base_url = "http://127.0.0.1:2/v1"
price_input = 2
price_output = 8

[routing]
fallbacks = { chat = ["backup"] }
"""


async def test_a_fallback_answers_under_its_name_and_is_billed_at_its_prices(
        fetch: Any, app_url: Any, tmp_path: Path, counter: Any) -> None:
    broken, backup = Failing(), Counting("backup")
    gateway = gateway_of(tmp_path, PRICED, counter, {"chat#1": broken, "backup#1": backup})
    base = app_url(model=None, gateway=gateway)
    response = await fetch(base + "/model", method="POST", body={"prompt": "hi"})
    assert response.code == 200 and response.headers["X-MonoAI-Deployment"] == "backup#1"
    result = json_of(response)
    assert result["response"] == "from backup" and result["model"]["name"] == "backup"
    usage = result["usage"]
    assert usage["cost_usd"] == pytest.approx((usage["prompt_tokens"] * 2 + usage["completion_tokens"] * 8) / 1e6)
    assert broken.calls == 1 and backup.calls == 1


async def test_a_streamed_fallback_names_itself_in_every_chunk(fetch: Any, app_url: Any, tmp_path: Path,
                                                                counter: Any) -> None:
    gateway = gateway_of(tmp_path, PRICED, counter, {"chat#1": Failing(), "backup#1": Counting("backup")})
    base = app_url(model=None, gateway=gateway)
    response = await fetch(base + "/v1/chat/completions", method="POST", body={
        "model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    chunks = [json.loads(line[len("data: "):]) for line in response.body.decode().split("\n\n")
              if line.startswith("data: {")]
    assert chunks and {chunk["model"] for chunk in chunks} == {"backup"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "from backup"


async def test_an_agent_under_a_gateway_is_named_as_asked_streamed_or_not(fetch: Any, app_url: Any,
                                                                          gateway: Gateway) -> None:
    from monoai_tornado.agents.agent import Agent

    base = app_url(model=None, gateway=gateway, agents=[Agent("helper", DemoBackend(delay=0))])
    body = {"model": "agent/helper", "messages": [{"role": "user", "content": "hi"}]}
    whole = json_of(await fetch(base + "/v1/chat/completions", method="POST", body=body))
    assert whole["model"] == "agent/helper"
    streamed = await fetch(base + "/v1/chat/completions", method="POST", body={**body, "stream": True})
    chunks = [json.loads(event[len("data: "):]) for event in streamed.body.decode().split("\n\n")
              if event.startswith("data: {")]
    assert chunks and {chunk["model"] for chunk in chunks} == {"agent/helper"}
    message = json_of(await fetch(base + "/v1/messages", method="POST", body={**body, "max_tokens": 50}))
    assert message["model"] == "agent/helper"


async def test_a_deployment_id_no_header_can_carry_is_sent_percent_encoded(fetch: Any, app_url: Any, tmp_path: Path,
                                                                         counter: Any) -> None:
    """A deployment id is the operator's to choose (by default the model's name and a number):
    one a header cannot carry as it is comes percent-encoded, never as a failed request."""
    config = '[[models]]\nname = "chat"\nid = "chat-✓ \u00e9"\nbackend = "demo"\n'
    base = str(app_url(model=None, gateway=gateway_of(tmp_path, config, counter)))
    for streamed in (False, True):
        response = await fetch(base + "/v1/chat/completions", method="POST", body={
            "model": "chat", "stream": streamed, "messages": [{"role": "user", "content": "hi"}]})
        assert response.code == 200
        assert response.headers["X-MonoAI-Deployment"] == "chat-%E2%9C%93 %C3%A9"
    plain = await fetch(base + "/model", method="POST", body={"prompt": "hi"})
    assert plain.code == 200 and plain.headers["X-MonoAI-Deployment"] == "chat-%E2%9C%93 %C3%A9"

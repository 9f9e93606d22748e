"""The HTTP endpoints of API.md: shapes of /, /health, /model, /model/stream, and concurrency."""
from __future__ import annotations

import asyncio
import datetime

import pytest

from tests.support.backends_for_tests import EchoBackend, ScriptedBackend
from tests.support.http import json_of, parse_sse


@pytest.fixture
def demo_url(app_url):
    return app_url("Demo App")


async def test_root_greets_with_name_start_time_and_demo_label(demo_url, fetch):
    response = await fetch(demo_url + "/")
    body = json_of(response)
    assert response.code == 200
    assert body["msg"] == "App Demo App successfully started"
    started = datetime.datetime.fromisoformat(body["started_at"].replace("Z", "+00:00"))
    assert started.tzinfo is not None and started.utcoffset() == datetime.timedelta(0)
    assert body["model"]["provider"] == "demo"
    assert "DEMO" in body["notice"]


async def test_health(demo_url, fetch):
    response = await fetch(demo_url + "/health")
    assert response.code == 200
    assert json_of(response) == {"status": "ok", "app": "Demo App"}


@pytest.mark.parametrize("path", ["/model", "/model/stream"])
async def test_model_result_shape_and_usage(demo_url, fetch, counter, path):
    response = await fetch(demo_url + path, "POST", {"prompt": "Ciao mondo", "user_id": "u1"})
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = json_of(response)
    assert set(body) == {"prompt", "response", "model", "usage", "finish_reason"}
    assert body["finish_reason"] == "stop"
    assert body["prompt"] == "Ciao mondo"
    assert "Ciao mondo" in body["response"]
    assert body["model"] == {"provider": "demo", "name": "monoai-demo"}
    usage = body["usage"]
    assert usage["prompt_tokens"] == counter.count_messages([{"role": "user", "content": "Ciao mondo"}])
    assert usage["completion_tokens"] == counter.count(body["response"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["estimated"] is True


async def test_reported_usage_is_used_as_is(app_url, fetch):
    backend = ScriptedBackend(["a", "b"], usage=(11, 7))
    url = app_url(model=backend)
    body = json_of(await fetch(url + "/model", "POST", {"prompt": "x"}))
    assert body["response"] == "ab"
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


async def test_numeric_user_id_is_accepted(demo_url, fetch):
    response = await fetch(demo_url + "/model", "POST", {"prompt": "hi", "user_id": 42})
    assert response.code == 200


async def test_unknown_fields_are_ignored(demo_url, fetch):
    response = await fetch(demo_url + "/model", "POST", {"prompt": "hi", "temperature": 3, "x": [1]})
    assert response.code == 200


async def test_model_endpoints_absent_without_model(app_url, fetch):
    url = app_url("Empty", model=None)
    response = await fetch(url + "/model", "POST", {"prompt": "hi"})
    assert response.code == 404
    assert json_of(response)["code"] == "not_found"
    assert (await fetch(url + "/health")).code == 200


async def test_fifty_concurrent_streams_never_mix(app_url, fetch):
    """Each of 50 concurrent SSE streams on one model gets exactly its own text."""
    url = app_url(model=EchoBackend())
    prompts = [f"stream number {i} says " + " ".join(f"w{i}x{j}" for j in range(20)) for i in range(50)]

    async def one(prompt):
        response = await fetch(url + "/model/stream", "POST", {"prompt": prompt},
                               headers={"Accept": "text/event-stream"})
        return prompt, parse_sse(response.body)

    for prompt, events in await asyncio.gather(*(one(p) for p in prompts)):
        chunks = [data["content"] for name, data in events if name == "chunk"]
        assert len(chunks) == 24
        assert "".join(chunks) == prompt
        assert events[-1][0] == "complete"
        assert events[-1][1]["result"]["response"] == prompt

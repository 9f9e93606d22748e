"""MonoAI 0.0.25's own ``Model`` and ``Agent`` served as-is, in front of the real test upstream.

MonoAI talks to the upstream through LiteLLM (provider ``openai``, ``OPENAI_BASE_URL``);
LiteLLM is told to use its bundled model list, so nothing leaves 127.0.0.1.
"""

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before LiteLLM is imported: no download
monoai_models = pytest.importorskip("monoai.models", reason="pip install -e '.[monoai]'")
monoai_agents = pytest.importorskip("monoai.agents")

from tests.support.http import json_of  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.ws_helpers import chunks_of, connect, read, read_until_end, send  # noqa: E402


@pytest.fixture
def upstream_env(monkeypatch: pytest.MonkeyPatch):
    """Point MonoAI's provider ``openai`` at ``base_url``."""

    def point(base_url: str) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-monoai")
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
        monkeypatch.setenv("OPENAI_API_BASE", base_url)

    return point


def weather(city: str) -> str:  # real annotations (no __future__ import): MonoAI reads them
    """Tell the weather in a city."""
    return f"sunny in {city}"


async def test_a_monoai_model_streams_its_chunks_while_the_upstream_is_still_answering(app_url, upstream_env):
    async with FakeOpenAI(chunks=["Real", " Mono", "AI", " stream"], stall_after=2, stall=None) as upstream:
        upstream_env(upstream.base_url)
        model = monoai_models.Model(provider="openai", model="test-model")
        url = app_url("MonoAI", model=model)
        ws = await connect(url, "/model/ws")
        await send(ws, {"prompt": "stream please"})
        first = [await read(ws, timeout=30), await read(ws, timeout=30)]
        assert chunks_of(first) == "Real Mono"
        assert not upstream.requests[0].finished  # the upstream is paused after two chunks
        upstream.release()
        messages = first + await read_until_end(ws, timeout=30)
        result = messages[-1]["result"]
        assert chunks_of(messages) == result["response"] == "Real MonoAI stream"
        assert result["model"] == {"provider": "openai", "name": "test-model"}
        assert upstream.requests[0].body["stream"] is True
        assert upstream.requests[0].body["messages"] == [{"role": "user", "content": "stream please"}]
        ws.close()


async def test_cancelling_a_monoai_model_stops_the_upstream_and_frees_the_connection(app_url, upstream_env):
    async with FakeOpenAI(chunks=["one", " two", " three"], stall_after=1, stall=None) as upstream:
        upstream_env(upstream.base_url)
        model = monoai_models.Model(provider="openai", model="test-model")
        url = app_url("MonoAI", model=model)
        ws = await connect(url, "/model/ws")
        await send(ws, {"prompt": "long answer"})
        assert await read(ws, timeout=30) == {"type": "chunk", "content": "one"}
        await send(ws, {"type": "cancel"})
        assert await read(ws, timeout=30) == {"type": "cancelled"}
        await upstream.wait_until(lambda: upstream.requests[0].closed_early, 10)  # the upstream saw it leave
        upstream.configure(stall_after=None)
        await send(ws, {"prompt": "next"})  # the next prompt is not held behind the cancelled one
        final = (await read_until_end(ws, timeout=30))[-1]
        assert final["result"]["response"] == "one two three"
        ws.close()


async def test_a_monoai_agent_lists_its_tools_and_names_its_model(make_app, serve, fetch, upstream_env):
    upstream_env("http://127.0.0.1:9/v1")  # never called: the listing only reads the object
    model = monoai_models.Model(provider="openai", model="test-model")
    agent = monoai_agents.Agent(model, tools=[weather], name="forecaster")
    app = make_app("MonoAI", model=None, agents=[agent])
    url = serve(app)
    listed = json_of(await fetch(url + "/agents"))["agents"]
    assert listed == [{"name": "forecaster", "description": listed[0]["description"],
                       "tools": [{"name": "weather", "description": "Tell the weather in a city."}]}]
    assert app.agents["forecaster"].model() == {"provider": "openai", "name": "test-model"}

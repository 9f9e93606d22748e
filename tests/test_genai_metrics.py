"""/metrics: tokens, time to first token and run duration per model, named by the GenAI conventions."""
from __future__ import annotations

import re

from monoai_tornado import DemoBackend
from monoai_tornado.agents import default_agents
from monoai_tornado.backends.openai import OpenAIBackend
from tests.support.fake_openai import FakeOpenAI
from tests.test_routing import gateway_of

SAMPLE = re.compile(r'^([a-z_]+)\{(.*)\} (\S+)$')


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """``{labels: value}`` of the samples called ``name`` (a histogram's ``_sum``, ``_count``, ``_bucket``)."""
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match.group(2)))
            found[labels] = float(match.group(3))
    return found


def only(found: dict[frozenset[tuple[str, str]], float], **labels: str) -> float:
    [value] = [value for key, value in found.items() if set(labels.items()) <= key]
    return value


async def test_runs_are_counted_by_model_with_the_genai_names(app_url, fetch):
    async with FakeOpenAI() as upstream:  # every answer reports 11 prompt and 7 completion tokens
        url = app_url(model=OpenAIBackend(upstream.base_url, "test-model"))
        for _ in range(2):
            answer = await fetch(url + "/v1/chat/completions", method="POST",
                                 body={"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})
            assert answer.code == 200
        text = (await fetch(url + "/metrics")).body.decode()
    assert "# TYPE gen_ai_client_token_usage histogram" in text
    sums = samples(text, "gen_ai_client_token_usage_sum")
    assert only(sums, gen_ai_request_model="test-model", gen_ai_token_type="input", deployment="") == 22
    assert only(sums, gen_ai_request_model="test-model", gen_ai_token_type="output") == 14
    assert only(samples(text, "gen_ai_client_token_usage_count"), gen_ai_token_type="input") == 2
    buckets = samples(text, "gen_ai_client_token_usage_bucket")
    assert only(buckets, gen_ai_token_type="input", le="4") == 0 and only(buckets, gen_ai_token_type="input", le="16") == 2
    assert only(samples(text, "gen_ai_server_time_to_first_token_seconds_count"), gen_ai_request_model="test-model") == 2
    assert only(samples(text, "gen_ai_server_request_duration_seconds_bucket"), le="+Inf") == 2


async def test_agents_and_the_model_are_told_apart_and_nothing_shows_before_a_run(app_url, fetch):
    backend = DemoBackend(delay=0)
    url = app_url(model=backend, agents=default_agents(backend))
    assert "gen_ai_client_token_usage" not in (await fetch(url + "/metrics")).body.decode()
    assert (await fetch(url + "/model", method="POST", body={"prompt": "hi"})).code == 200
    assert (await fetch(url + "/agent/assistant", method="POST", body={"prompt": "hi"})).code == 200
    counts = samples((await fetch(url + "/metrics")).body.decode(), "gen_ai_server_request_duration_seconds_count")
    assert {dict(key)["gen_ai_request_model"] for key in counts} == {"monoai-demo", "agent/assistant"}


async def test_a_routed_model_is_counted_by_deployment(app_url, fetch, tmp_path, counter):
    config = '[[models]]\nname = "chat"\nbackend = "demo"\n[[models]]\nname = "chat"\nbackend = "demo"\n'
    url = app_url(model=None, gateway=gateway_of(tmp_path, config + '[routing]\nstrategy = "round-robin"\n', counter))
    for _ in range(4):
        assert (await fetch(url + "/model", method="POST", body={"prompt": "hi", "model": "chat"})).code == 200
    counts = samples((await fetch(url + "/metrics")).body.decode(), "gen_ai_server_request_duration_seconds_count")
    assert {dict(key)["deployment"]: value for key, value in counts.items()} == {"chat#1": 2, "chat#2": 2}

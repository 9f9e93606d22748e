"""Cost and spend limits as clients see them, on every transport of one in-process server.

Prices: $0.15 per million prompt tokens, $0.60 per million completion tokens (150 and 600
nano-dollars a token), $0.075 per million cached prompt tokens.
"""
from __future__ import annotations

import json
from typing import Any

from tornado.httpclient import HTTPResponse

from monoai_tornado.agents import default_agents
from monoai_tornado.backends.demo import DemoBackend
from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.keys import FileKeyStore, KeyRing
from monoai_tornado.money import Prices
from monoai_tornado.ratelimit import Limit, RateLimiter
from monoai_tornado.ratelimit.limits import parse_spend_limit
from tests.support.fake_openai import FakeOpenAI
from tests.support.http import parse_sse
from tests.support.ws_helpers import connect, read_until_end, send

PRICES = Prices.per_million(0.15, 0.60, 0.075)
SSE = {"Accept": "text/event-stream"}


def cost(usage: dict[str, Any], cached: int = 0) -> float:
    return round(PRICES.cost_nanos(usage["prompt_tokens"], cached, usage["completion_tokens"]) / 1e9, 9)


def body_of(response: HTTPResponse) -> Any:
    return json.loads(response.body)


async def test_every_transport_tells_the_cost_of_its_run(app_url: Any, fetch: Any) -> None:
    model = DemoBackend(delay=0)
    url = app_url(model=model, agents=default_agents(model), prices=PRICES)
    plain = body_of(await fetch(url + "/model", "POST", {"prompt": "what does it cost?"}))
    assert plain["usage"]["cost_usd"] == cost(plain["usage"]) > 0
    events = parse_sse((await fetch(url + "/model/stream", "POST", {"prompt": "and streamed?"}, headers=SSE)).body)
    streamed = events[-1][1]["result"]["usage"]
    assert streamed["cost_usd"] == cost(streamed)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "and over a socket?"})
    socket = (await read_until_end(ws))[-1]["result"]["usage"]
    ws.close()
    assert socket["cost_usd"] == cost(socket)
    chat = body_of(await fetch(url + "/v1/chat/completions", "POST",
                               {"model": "monoai-demo", "messages": [{"role": "user", "content": "and on /v1?"}]}))
    assert chat["usage"]["cost_usd"] == cost(chat["usage"])
    response = body_of(await fetch(url + "/v1/responses", "POST", {"model": "monoai-demo", "input": "and here?"}))
    told = response["usage"]
    assert told["cost_usd"] == cost({"prompt_tokens": told["input_tokens"], "completion_tokens": told["output_tokens"]})
    message = body_of(await fetch(url + "/v1/messages", "POST", {"model": "monoai-demo", "max_tokens": 100,
                                                                 "messages": [{"role": "user", "content": "and here?"}]}))
    told_anthropic = message["usage"]
    assert told_anthropic["cost_usd"] == cost({"prompt_tokens": told_anthropic["input_tokens"],
                                               "completion_tokens": told_anthropic["output_tokens"]})
    agent = body_of(await fetch(url + "/agent/assistant", "POST", {"prompt": "what time is it?"}))
    assert agent["usage"]["cost_usd"] == cost(agent["usage"])  # the agent runs on the priced model
    metrics = (await fetch(url + "/metrics")).body.decode()
    spent = sum(u["cost_usd"] for u in (plain["usage"], streamed, socket, chat["usage"], told, told_anthropic,
                                          agent["usage"]))
    lines = [line for line in metrics.splitlines() if line.startswith("monoai_cost_usd_total{")]
    assert [line.split('"')[1] for line in lines] == ["agent/assistant", "monoai-demo"]
    assert abs(sum(float(line.split()[-1]) for line in lines) - spent) < 1e-9


async def test_a_model_without_prices_tells_no_cost_and_is_refused_under_a_spend_limit(app_url: Any, fetch: Any) -> None:
    free = body_of(await fetch(app_url() + "/model", "POST", {"prompt": "free?"}))
    assert "cost_usd" not in free["usage"]
    url = app_url(rate_limiter=RateLimiter([Limit("request", 5, "minute"), parse_spend_limit("1/day")]))
    refused = await fetch(url + "/model", "POST", {"prompt": "unpriced", "user_id": "u"})
    assert refused.code == 403 and body_of(refused)["code"] == "model_not_priced"
    chat = await fetch(url + "/v1/chat/completions", "POST",
                       {"model": "monoai-demo", "messages": [{"role": "user", "content": "unpriced"}]})
    assert chat.code == 403 and body_of(chat)["error"]["type"] == "permission_error"
    stats = body_of(await fetch(url + "/rate-limit/stats/u"))
    assert stats["usage"]["5-per-60"] == 0 and stats["spend"]["1-usd-per-86400"]["used_usd"] == 0


async def test_a_spend_limit_runs_until_its_money_is_spent_then_answers_spend_limited(app_url: Any, fetch: Any) -> None:
    limit = parse_spend_limit("0.0001/day")
    url = app_url(prices=PRICES, rate_limiter=RateLimiter([limit]))
    told, refused = [], None
    for _ in range(20):  # ~30 micro-dollars a run: a handful fit
        response = await fetch(url + "/model", "POST", {"prompt": "spend it", "user_id": "sam", "max_tokens": 60})
        if response.code != 200:
            refused = response
            break
        told.append(body_of(response)["usage"]["cost_usd"])
    assert refused is not None and refused.code == 429 and told
    assert body_of(refused)["code"] == "spend_limited" and 0 < int(refused.headers["Retry-After"]) <= 86400
    spend = body_of(await fetch(url + "/rate-limit/stats/sam"))["spend"][limit.name]
    assert spend["used_usd"] == round(sum(told), 9) <= 0.0001 and spend["reserved_usd"] == 0
    assert spend["left_usd"] == round(0.0001 - spend["used_usd"], 9)


async def test_a_keys_spend_limit_holds_its_requests(app_url: Any, fetch: Any, tmp_path: Any) -> None:
    url = app_url(prices=PRICES, keys=KeyRing(FileKeyStore(str(tmp_path / "keys.json"))), admin_token="adm")
    created = await fetch(url + "/admin/keys", "POST", {"user": "kim", "spend_limits": ["0.00001/hour"]},
                          headers={"Authorization": "Bearer adm"})
    assert created.code == 201 and body_of(created)["spend_limits"] == ["0.00001/hour"]
    key = {"Authorization": "Bearer " + body_of(created)["key"]}
    first = await fetch(url + "/model", "POST", {"prompt": "hi", "max_tokens": 5}, headers=key)
    assert first.code == 200 and body_of(first)["finish_reason"] == "length"
    codes = [(await fetch(url + "/model", "POST", {"prompt": "again", "max_tokens": 5}, headers=key)).code
             for _ in range(5)]
    assert codes[-1] == 429
    own = body_of(await fetch(url + "/rate-limit/stats/kim", headers=key))
    assert own["spend"]["0.00001-usd-per-3600"]["used_usd"] <= 0.00001


async def test_cached_prompt_tokens_the_upstream_reports_are_billed_at_the_cached_price(app_url: Any, fetch: Any) -> None:
    async with FakeOpenAI(chunks=["cheap", " again"], usage=(1000, 10), cached_tokens=800) as upstream:
        url = app_url(model=OpenAIBackend(upstream.base_url, "test-model"), prices=PRICES)
        result = body_of(await fetch(url + "/model", "POST", {"prompt": "a long shared prefix"}))
    assert result["usage"]["prompt_tokens"] == 1000
    assert result["usage"]["cost_usd"] == cost(result["usage"], cached=800) == 0.000096  # 200*150 + 800*75 + 10*600


def test_keys_create_takes_spend_limits_and_refuses_a_bad_one(tmp_path: Any) -> None:
    import subprocess
    import sys

    keys_file = str(tmp_path / "keys.json")

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monoai_tornado", "keys", "create", "--user", "pat", *args,
                               "--keys-file", keys_file], capture_output=True, text=True, timeout=60)

    made = keys("--spend-limit", "5/day", "--spend-limit", "100/month")
    assert made.returncode == 0 and made.stdout.startswith("sk-mt-"), made.stderr
    (record,) = json.loads((tmp_path / "keys.json").read_text())["keys"]
    assert record["spend_limits"] == ["5/day", "100/month"]
    bad = keys("--spend-limit", "5/fortnight")
    assert bad.returncode == 2 and "invalid spend limit '5/fortnight': unknown window" in bad.stderr


async def test_an_answer_that_ignores_max_tokens_is_stopped_where_the_money_runs_out(
    app_url: Any, fetch: Any, counter: Any,
) -> None:
    from tests.support.backends_for_tests import ScriptedBackend

    words = [f" word{i}" for i in range(400)]  # far more than the money buys; max_tokens ignored
    backend = ScriptedBackend(words)
    prices = Prices.per_million(1, 100)  # 100,000 nano-dollars a completion token
    limit = parse_spend_limit("0.005/day")  # 5,000,000 nano-dollars: about 50 completion tokens
    url = app_url(model=backend, prices=prices, rate_limiter=RateLimiter([limit]))
    result = body_of(await fetch(url + "/model", "POST", {"prompt": "talk", "user_id": "m"}))
    assert result["finish_reason"] == "length" and backend.options[0].max_tokens < 60
    chunk_cost = max(counter.count(word) for word in words) * prices.output / 1e6  # USD of one piece
    assert result["usage"]["cost_usd"] <= 0.005 + chunk_cost
    spend = body_of(await fetch(url + "/rate-limit/stats/m"))["spend"][limit.name]
    assert spend["used_usd"] == result["usage"]["cost_usd"] and spend["reserved_usd"] == 0
    second = await fetch(url + "/model", "POST", {"prompt": "more", "user_id": "m"})
    assert second.code == 429 and body_of(second)["code"] == "spend_limited"

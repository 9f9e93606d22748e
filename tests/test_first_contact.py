"""What a new user meets first (issue 28): one-line errors for a wrong Redis URL, a missing
redis package, an empty admin token or a missing keys file; a browser opening ``/`` lands on
the playground; ``/favicon.ico`` is there; ``/docs`` comes with examples that work."""
from __future__ import annotations

import sys
from typing import Any

import pytest

from monoai_tornado import DemoBackend
from monoai_tornado.agents import default_agents
from monoai_tornado.cli import main as cli_main
from monoai_tornado.keys.cli import main as keys_main
from monoai_tornado.openapi_examples import request_examples
from monoai_tornado.ratelimit import Limit, RateLimiter
from monoai_tornado.redis_url import redis_url_problem
from tests.support.http import json_of, parse_sse

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def one_line_exit(capsys: pytest.CaptureFixture[str], call: Any) -> tuple[int, str]:
    """Run ``call`` (a CLI main); its exit status and what it said, checked to be one line."""
    with pytest.raises(SystemExit) as exited:
        call()
    code = exited.value.code
    err = capsys.readouterr().err + (code if isinstance(code, str) else "")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return (1 if isinstance(code, str) else int(code or 0)), err


@pytest.mark.parametrize(("url", "says"), [
    ("localhost:6379", "has no scheme"),
    ("redis://127.0.0.1:notaport/5", "the port 'notaport' is not a number"),
    ("redis://127.0.0.1:6379/zero", "the database 'zero' is not a number"),
    ("redis+cluster://127.0.0.1:7000,127.0.0.1:x", "the port 'x' is not a number"),
])
def test_a_wrong_redis_url_is_one_line(capsys, url, says) -> None:
    code, err = one_line_exit(capsys, lambda: cli_main(["--port", "0", "--limit", "5/minute", "--redis-url", url]))
    assert code == 2 and says in err and "--redis-url" in err
    code, err = one_line_exit(capsys, lambda: keys_main(["list", "--redis-url", url]))
    assert code == 1 and says in err


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://u:p@h:6380", "unix:///tmp/r.sock",
                                 "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster", "redis://[::1]:6379/2"])
def test_good_redis_urls_pass(url) -> None:
    assert redis_url_problem(url) is None


def test_keys_list_without_the_redis_package_is_one_line(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis now fails, as without the extra
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    code, err = one_line_exit(capsys, lambda: keys_main(["list", "--redis-url", "redis://127.0.0.1:6379/15"]))
    assert code == 1 and "pip install 'monoai_tornado[redis]'" in err


def test_keys_list_of_a_missing_file_says_so(capsys, tmp_path) -> None:
    missing = str(tmp_path / "missing.json")
    code, err = one_line_exit(capsys, lambda: keys_main(["list", "--keys-file", missing]))
    assert code == 1 and "does not exist" in err and "missing.json" in err
    assert not (tmp_path / "missing.json").exists()


def test_an_empty_admin_token_is_refused_at_start(capsys) -> None:
    code, err = one_line_exit(capsys, lambda: cli_main(["--port", "0", "--admin-token", ""]))
    assert code == 2 and "--admin-token is empty" in err and "MONOAI_ADMIN_TOKEN" in err


@pytest.fixture
def url(app_url: Any) -> str:
    backend = DemoBackend(delay=0)
    return str(app_url(model=backend, agents=default_agents(backend),
                       rate_limiter=RateLimiter([Limit("request", 100, "minute")])))


async def test_a_browser_opening_the_root_lands_on_the_playground(url, fetch) -> None:
    browser = await fetch(url + "/", headers={"Accept": BROWSER_ACCEPT}, follow_redirects=False)
    assert browser.code == 302 and browser.headers["Location"] == "/playground"
    assert "Accept" in browser.headers["Vary"]
    for accept in (None, "*/*", "application/json", "application/json, text/html"):
        headers = {} if accept is None else {"Accept": accept}
        api = await fetch(url + "/", headers=headers)
        assert api.code == 200 and "successfully started" in json_of(api)["msg"], accept


async def test_under_a_prefix_the_browser_goes_to_that_prefixs_playground(app_url, fetch) -> None:
    base = app_url(pages="/ai")
    browser = await fetch(base + "/ai/", headers={"Accept": BROWSER_ACCEPT}, follow_redirects=False)
    assert browser.code == 302 and browser.headers["Location"] == "/ai/playground"


async def test_the_favicon_is_served(url, fetch) -> None:
    icon = await fetch(url + "/favicon.ico")
    assert icon.code == 200 and icon.headers["Content-Type"] == "image/x-icon"
    assert icon.body[:4] == b"\0\0\1\0" and len(icon.body) > 1000  # an ICO with one image
    listed = json_of(await fetch(url + "/"))["endpoints"]
    assert "GET /favicon.ico" not in listed


async def test_every_docs_example_works_as_it_comes(url, fetch) -> None:
    doc = json_of(await fetch(url + "/openapi.json"))
    tried = []
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None or operation["operationId"] == "createApiKey":  # needs keys (tested in its own app)
                continue
            assert "example" in body, operation["operationId"]
            path = template
            for parameter in [*item.get("parameters", ()), *operation.get("parameters", ())]:
                assert "example" in parameter, (operation["operationId"], parameter["name"])
                path = path.replace("{" + parameter["name"] + "}", parameter["example"])
            accept = {"Accept": "text/event-stream"} if path.endswith("/stream") else {}
            answer = await fetch(url + path, method.upper(), body["example"], headers=accept)
            assert answer.code == 200, (path, answer.body)
            if accept:
                assert parse_sse(answer.body)[-1][0] == "complete"
            tried.append(operation["operationId"])
    assert {"askModel", "askModelStream", "runAgent", "runAgentStream", "validateUser",
            "createChatCompletion"} <= set(tried)


def test_the_chat_example_names_an_agent_when_no_model_is_served() -> None:
    assert request_examples(None, "shop")["createChatCompletion"]["model"] == "agent/shop"
    assert "createChatCompletion" not in request_examples(None, None)

"""Hostile input, round three (issue 28): identities are capped, logs cannot be forged, a
``max_tokens`` of 1e308 is refused, one rule for forwarded addresses, and the listing routes
need the key under ``--require-api-key``."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from monoai_tornado import DemoBackend
from monoai_tornado.agents import default_agents
from monoai_tornado.identity import IdentityResolver
from monoai_tornado.keys import FileKeyStore, KeyRing, new_key
from monoai_tornado.log_safety import SafeFormatter, escape_controls
from monoai_tornado.prompt_request import MAX_IDENTITY_BYTES
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.http import json_of
from tests.support.processes import Servers, call
from tests.support.ws_helpers import connect, read

LONG = "u" * (MAX_IDENTITY_BYTES + 1)
#: 86 three-byte characters: 258 bytes, but only 86 characters.
LONG_UTF8 = "€" * 86


@pytest.fixture
def url(app_url: Any) -> str:
    backend = DemoBackend(delay=0)
    return str(app_url(model=backend, agents=default_agents(backend),
                       rate_limiter=RateLimiter([Limit("request", 100, "minute")])))


@pytest.mark.parametrize("user_id", [LONG, LONG_UTF8, int("9" * 300)])
async def test_an_identity_over_256_bytes_is_invalid_json_on_every_route(url, fetch, user_id) -> None:
    for path in ("/model", "/model/stream", "/agent/assistant"):
        answer = await fetch(url + path, "POST", {"prompt": "hi", "user_id": user_id})
        assert answer.code == 400 and json_of(answer)["code"] == "invalid_json", path
        assert str(MAX_IDENTITY_BYTES) in json_of(answer)["error"]
    chat = await fetch(url + "/v1/chat/completions", "POST",
                       {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "user": user_id})
    assert chat.code == 400 and json_of(chat)["error"]["code"] == "invalid_json"
    validate = await fetch(url + "/validate-user", "POST", {"user_id": user_id})
    assert validate.code == 400 and json_of(validate)["code"] == "invalid_json"
    ws = await connect(url, "/model/ws")
    await ws.write_message(json.dumps({"prompt": "hi", "user_id": user_id}))
    assert (await read(ws))["code"] == "invalid_json"
    ws.close()
    stats = json_of(await fetch(url + "/rate-limit/stats"))
    assert stats["active_users"] == 0  # nothing was stored under it


async def test_an_identity_of_256_bytes_is_taken(url, fetch) -> None:
    user_id = "€" * 85 + "u"  # 256 bytes
    answer = await fetch(url + "/model", "POST", {"prompt": "hi", "user_id": user_id})
    assert answer.code == 200
    assert answer.headers["x-ratelimit-remaining-requests"] == "99"


@pytest.mark.parametrize("value", [1e308, 2**31, 10**20, "1e308"])
async def test_a_max_tokens_that_is_no_real_cap_is_refused(url, fetch, value) -> None:
    answer = await fetch(url + "/model", "POST", {"prompt": "hi", "max_tokens": value})
    assert answer.code == 400 and json_of(answer)["code"] == "invalid_json"
    body = '{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e308}'
    chat = await fetch(url + "/v1/chat/completions", "POST", body)
    assert chat.code == 400 and json_of(chat)["error"]["code"] == "invalid_json"
    whole = await fetch(url + "/model", "POST", {"prompt": "hi", "max_tokens": 100.0})
    assert whole.code == 200


def test_escape_controls_writes_every_control_character_escaped() -> None:
    assert escape_controls("plain text é") == "plain text é"
    assert escape_controls("a\nb\r\tc\x00d\x1be\x7f\x85\u2028") == "a\\nb\\r\\tc\\x00d\\x1be\\x7f\\x85\\u2028"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "user=%s", ("eve\n200 GET /forged",), None)
    assert "\n" not in SafeFormatter("%(message)s").format(record)


async def test_a_newline_in_user_id_does_not_forge_an_access_log_line(url, fetch, caplog) -> None:
    forged = "eve\n200 POST /model user=admin tokens=0 1.00ms\x00"
    with caplog.at_level(logging.INFO, logger="monoai_tornado.access"):
        answer = await fetch(url + "/model", "POST", {"prompt": "hi", "user_id": forged})
        assert answer.code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "monoai_tornado.access"]
    assert any("user=eve\\n200 POST /model user=admin tokens=0 1.00ms\\x00 " in line for line in lines)
    assert not any("\n" in line or "\x00" in line for line in lines)


@pytest.mark.process
def test_the_server_log_has_no_forged_line_nor_nul() -> None:
    servers = Servers(capture=True)
    try:
        base = servers("--log-level", "info", "--limit", "100/minute")
        status, _ = call(base + "/model", {"prompt": "hi", "user_id": "eve\nFORGED line\x00"})
        assert status == 200
    finally:
        output = servers.stop_all()
    assert "\x00" not in output
    assert not any(line.startswith("FORGED") for line in output.splitlines())
    assert "user=eve\\nFORGED line\\x00" in output


def test_x_real_ip_wins_from_a_trusted_proxy() -> None:
    resolver = IdentityResolver(trusted_proxies=["10.0.0.0/8"])
    # A proxy that sets only X-Real-IP: the client's own X-Forwarded-For is not believed.
    assert resolver.client_ip("10.0.0.5", {"X-Real-IP": "198.51.100.8", "X-Forwarded-For": "1.2.3.4"}) \
        == "198.51.100.8"
    assert resolver.client_ip("10.0.0.5", {"X-Real-IP": "garbage", "X-Forwarded-For": "1.2.3.4"}) == "10.0.0.5"
    assert resolver.client_ip("10.0.0.5", {"X-Forwarded-For": "1.2.3.4, 198.51.100.9"}) == "198.51.100.9"


async def test_a_proxy_sending_only_x_real_ip_limits_the_real_client(app_url, fetch) -> None:
    url = app_url(rate_limiter=RateLimiter([Limit("request", 1, "minute")]), trusted_proxies=["127.0.0.1/32"])
    codes = []
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):  # the client varies X-Forwarded-For, the proxy sets X-Real-IP
        answer = await fetch(url + "/model", "POST", {"prompt": "p"},
                             headers={"X-Real-IP": "198.51.100.1", "X-Forwarded-For": forged})
        codes.append(answer.code)
    assert codes == [200, 429, 429]
    other = await fetch(url + "/model", "POST", {"prompt": "p"}, headers={"X-Real-IP": "198.51.100.2"})
    assert other.code == 200


async def test_listing_routes_need_the_key_when_keys_are_required(app_url, fetch, tmp_path) -> None:
    store = FileKeyStore(tmp_path / "keys.json")
    secret, record = new_key("alice")
    await store.add(record)
    backend = DemoBackend(delay=0)
    url = app_url(model=backend, agents=default_agents(backend), keys=KeyRing(store, require=True))
    for path in ("/v1/models", "/agents"):
        bare = await fetch(url + path)
        assert bare.code == 401 and bare.headers["WWW-Authenticate"].startswith("Bearer"), path
        wrong = await fetch(url + path, headers={"Authorization": "Bearer sk-mt-wrong"})
        assert wrong.code == 401, path
        keyed = await fetch(url + path, headers={"Authorization": f"Bearer {secret}"})
        assert keyed.code == 200, path
    for path in ("/", "/health", "/openapi.json"):
        assert (await fetch(url + path)).code == 200, path


@pytest.mark.parametrize("field", ["user", "safety_identifier"])
async def test_the_responses_front_caps_its_identities_too(url, fetch, field) -> None:
    answer = await fetch(url + "/v1/responses", "POST", {"model": "monoai-demo", "input": "hi", field: LONG})
    assert answer.code == 400 and json_of(answer)["error"]["code"] == "invalid_json"
    fits = await fetch(url + "/v1/responses", "POST", {"model": "monoai-demo", "input": "hi", field: "alice"})
    assert fits.code == 200

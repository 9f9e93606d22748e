"""API keys on a real server (in this process, keys in a real file): who pays, who gets in, and
what a bad key gets on HTTP, SSE and the WebSocket handshake."""
from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from monoai_tornado import Application
from monoai_tornado.agents import default_agents
from monoai_tornado.backends.demo import DemoBackend
from monoai_tornado.keys import FileKeyStore, KeyRing, new_key
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.http import AppUrl, MakeApp, json_of, parse_sse
from tests.support.ws_helpers import read_until_end, send

ADMIN = "admin-secret-token"


class Keys:
    """A keys file with alice's (3 an hour of her own), bob's, a revoked and an expired key."""

    def __init__(self, path: Any) -> None:
        self.store = FileKeyStore(path)
        self.alice, alice = new_key("alice", name="laptop", limits=["3/hour"])
        self.bob, bob = new_key("bob")
        self.revoked, revoked = new_key("alice")
        self.expired, expired = new_key("alice", expires_in=60, now=1_000_000.0)
        self.records = {"alice": alice, "bob": bob}
        self._pending = [alice, bob, revoked.revoke(), expired]

    async def save(self) -> None:
        for record in self._pending:
            await self.store.add(record)


@pytest.fixture
def keys(tmp_path: Any, io_loop: Any) -> Keys:
    made = Keys(tmp_path / "keys.json")
    io_loop.run_sync(made.save)
    return made


@pytest.fixture
def keys_app(keys: Keys, make_app: MakeApp) -> Callable[..., Application]:
    """``keys_app(require=False, **kwargs)``: the demo app and agents on ``keys``' store, 100
    requests a minute by default, the admin token ``ADMIN``."""

    def build(*, require: bool = False, **kwargs: Any) -> Application:
        limiter = RateLimiter([Limit("request", 100, "minute")])
        backend = DemoBackend(delay=0)
        return make_app("keys", model=backend, agents=default_agents(backend), rate_limiter=limiter,
                        keys=KeyRing(keys.store, require=require), admin_token=ADMIN, **kwargs)

    return build


@pytest.fixture
def keys_url(serve: Any, keys_app: Callable[..., Application]) -> AppUrl:
    """``keys_url(require=False, **kwargs)``: :func:`keys_app` served; its base URL."""
    return lambda **kwargs: str(serve(keys_app(**kwargs)))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_bills_its_own_user_whatever_user_id_the_body_names(keys_url, fetch, keys) -> None:
    base = keys_url()
    answer = await fetch(base + "/model", "POST", {"prompt": "hi", "user_id": "bob"}, headers=bearer(keys.alice))
    assert answer.code == 200
    # The key's own limit (3 an hour) replaced the default (100): its headers say so.
    assert answer.headers["x-ratelimit-limit-requests"] == "3"
    alice = json_of(await fetch(base + "/rate-limit/stats/alice", headers=bearer(ADMIN)))
    # The admin sees the defaults and the limits of alice's keys: she used one of her key's.
    assert alice["usage"] == {"100-per-60": 0, "3-per-3600": 1}
    assert json_of(await fetch(base + "/rate-limit/stats/bob", headers=bearer(ADMIN)))["usage"] == {"100-per-60": 0}
    # Her own key reads her own stats (with her key's limits), not bob's.
    mine = await fetch(base + "/rate-limit/stats/alice", headers=bearer(keys.alice))
    assert mine.code == 200 and json_of(mine)["usage"] == {"3-per-3600": 1}
    assert (await fetch(base + "/rate-limit/stats/bob", headers=bearer(keys.alice))).code == 403


async def test_a_keys_own_limits_hold_and_other_keys_keep_the_defaults(keys_url, fetch, keys) -> None:
    base = keys_url()
    codes = [(await fetch(base + "/model", "POST", {"prompt": "p"}, headers=bearer(keys.alice))).code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert (await fetch(base + "/model", "POST", {"prompt": "p"}, headers=bearer(keys.bob))).code == 200


BAD_KEYS = {
    "wrong": "sk-mt-" + "A" * 43,
    "empty bearer": "",
    "huge": "sk-mt-" + "x" * 20_000,
    "non-ascii": "sk-mt-clé-ünïcødé",
    "another scheme": None,
}


@pytest.mark.parametrize("kind", [*BAD_KEYS, "revoked", "expired"])
@pytest.mark.parametrize("require", [False, True])
async def test_a_bad_key_gets_401_invalid_api_key_never_a_500(keys_url, fetch, keys, kind, require) -> None:
    base = keys_url(require=require)
    if kind == "another scheme":
        headers = {"Authorization": "Basic YWxpY2U6cGFzcw=="}
    elif kind == "empty bearer":
        headers = {"Authorization": "Bearer"}
    else:
        secret = {"revoked": keys.revoked, "expired": keys.expired}.get(kind) or BAD_KEYS[kind]
        headers = bearer(secret)
    for path in ("/model", "/model/stream", "/agent/assistant"):
        answer = await fetch(base + path, "POST", {"prompt": "hi"}, headers=headers)
        assert answer.code == 401, (path, answer.body)
        assert json_of(answer)["code"] == "invalid_api_key"
        assert answer.headers["WWW-Authenticate"] == "Bearer"


async def test_without_a_key_required_bare_user_ids_still_work_and_with_it_they_get_401(keys_url, fetch, keys) -> None:
    open_base = keys_url()
    assert (await fetch(open_base + "/model", "POST", {"prompt": "hi", "user_id": "dave"})).code == 200
    closed_base = keys_url(require=True)
    refused = await fetch(closed_base + "/model", "POST", {"prompt": "hi", "user_id": "dave"})
    assert refused.code == 401 and json_of(refused)["code"] == "missing_api_key"
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    # What is not a prompt stays open: health checks, the playground page.
    assert (await fetch(closed_base + "/health")).code == 200


async def test_a_server_without_keys_ignores_authorization(app_url, fetch) -> None:
    base = app_url("plain")
    answer = await fetch(base + "/model", "POST", {"prompt": "hi"}, headers=bearer("sk-no-key-required"))
    assert answer.code == 200
    assert (await fetch(base + "/admin/keys", headers=bearer(ADMIN))).code == 404


async def test_sse_with_a_key_streams_and_bills_the_key(keys_url, fetch, keys) -> None:
    base = keys_url(require=True)
    answer = await fetch(base + "/model/stream", "POST", {"prompt": "stream me"},
                         headers={**bearer(keys.bob), "Accept": "text/event-stream"})
    assert answer.code == 200
    assert parse_sse(answer.body)[-1][0] == "complete"
    stats = json_of(await fetch(base + "/rate-limit/stats/bob", headers=bearer(keys.bob)))
    assert stats["usage"] == {"100-per-60": 1}


# -- WebSocket ---------------------------------------------------------------------------------

def ws_request(base: str, **headers: str) -> HTTPRequest:
    return HTTPRequest(base.replace("http://", "ws://") + "/model/ws", headers=headers)


async def one_prompt(ws: Any) -> list[dict[str, Any]]:
    await send(ws, {"prompt": "over the socket", "user_id": "bob"})
    return await read_until_end(ws)


async def test_websocket_takes_the_key_in_the_header_or_as_a_subprotocol(keys_url, fetch, keys) -> None:
    base = keys_url(require=True)
    ws = await websocket_connect(ws_request(base, Authorization=f"Bearer {keys.alice}"))
    assert (await one_prompt(ws))[-1]["type"] == "complete"
    ws.close()
    # A browser cannot set Authorization: it offers "monoai" and "bearer.KEY"; the server picks "monoai".
    ws = await websocket_connect(ws_request(base), subprotocols=["monoai", f"bearer.{keys.alice}"])
    assert ws.selected_subprotocol == "monoai"
    assert (await one_prompt(ws))[-1]["type"] == "complete"
    ws.close()
    # Both prompts were alice's (the body's user_id "bob" did not count).
    usage = json_of(await fetch(base + "/rate-limit/stats/alice", headers=bearer(keys.alice)))["usage"]
    assert usage == {"3-per-3600": 2}


@pytest.mark.parametrize("how", ["header", "subprotocol", "none"])
async def test_websocket_handshake_with_a_bad_or_missing_key_is_refused_with_401(keys_url, keys, how) -> None:
    base = keys_url(require=True)
    if how == "header":
        connecting = websocket_connect(ws_request(base, Authorization=f"Bearer {keys.revoked}"))
    elif how == "subprotocol":
        connecting = websocket_connect(ws_request(base), subprotocols=["monoai", "bearer.sk-mt-nope"])
    else:
        connecting = websocket_connect(ws_request(base))
    with pytest.raises(HTTPClientError) as refused:
        await connecting
    assert refused.value.code == 401
    answer = refused.value.response
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.headers["Content-Type"].startswith("application/json")
    body = json.loads(answer.body)
    assert body["code"] == ("missing_api_key" if how == "none" else "invalid_api_key")


async def test_a_key_revoked_while_its_socket_is_open_is_refused_on_the_next_prompt(app_url, keys, tmp_path) -> None:
    ring = KeyRing(keys.store, require=True, refresh_interval=0)  # check the store on every prompt
    base = app_url("keys", keys=ring)
    ws = await websocket_connect(ws_request(base, Authorization=f"Bearer {keys.bob}"))
    assert (await one_prompt(ws))[-1]["type"] == "complete"
    await keys.store.revoke(keys.records["bob"].id)
    refused = (await one_prompt(ws))[-1]
    assert refused["code"] == "invalid_api_key"
    ws.close()


# -- the admin API -----------------------------------------------------------------------------

async def test_admin_api_creates_lists_and_revokes_keys(keys_url, fetch, keys) -> None:
    base = keys_url()
    made = await fetch(base + "/admin/keys", "POST", {"user": "carol", "name": "ci", "limits": ["2/hour"],
                                                      "token_limits": ["500/hour"], "expires_in": 3600},
                       headers=bearer(ADMIN))
    assert made.code == 201
    created = json_of(made)
    assert created["key"].startswith("sk-mt-") and created["id"].startswith("key_") and len(created["id"]) == 16
    assert (created["user"], created["name"], created["limits"], created["token_limits"]) == (
        "carol", "ci", ["2/hour"], ["500/hour"])
    assert created["created_at"] < created["expires_at"]
    # The new key works at once, held to its own limits.
    codes = [(await fetch(base + "/model", "POST", {"prompt": "p"}, headers=bearer(created["key"]))).code
             for _ in range(3)]
    assert codes == [200, 200, 429]
    listed = json_of(await fetch(base + "/admin/keys", headers=bearer(ADMIN)))["keys"]
    assert created["id"] in [item["id"] for item in listed]
    assert created["key"] not in json.dumps(listed) and all("hash" not in item for item in listed)
    gone = await fetch(base + f"/admin/keys/{created['id']}", "DELETE", headers=bearer(ADMIN))
    assert gone.code == 200 and json_of(gone) == {"id": created["id"], "revoked": True}
    assert (await fetch(base + "/model", "POST", {"prompt": "p"}, headers=bearer(created["key"]))).code == 401
    unknown = await fetch(base + "/admin/keys/key_000000000000", "DELETE", headers=bearer(ADMIN))
    assert unknown.code == 404 and json_of(unknown)["code"] == "not_found"


@pytest.mark.parametrize("body", [{}, {"user": ""}, {"user": 7}, {"user": "ip:1.2.3.4"},
                                  {"user": "u", "limits": ["5/fortnight"]}, {"user": "u", "limits": "5/minute"},
                                  {"user": "u", "expires_in": -1}, {"user": "u", "expires_in": "30d"},
                                  {"user": "u", "name": ["x"]}, [], "not json"])
async def test_admin_api_refuses_bad_bodies_with_400(keys_url, fetch, keys, body) -> None:
    base = keys_url()
    answer = await fetch(base + "/admin/keys", "POST", body if body != "not json" else b"{", headers=bearer(ADMIN))
    assert answer.code == 400 and json_of(answer)["code"] == "invalid_json"


async def test_admin_api_needs_the_admin_token_not_a_key(app_url, keys_url, fetch, keys) -> None:
    base = keys_url()
    for headers in ({}, bearer(keys.alice), bearer("wrong-token")):
        for method, path, body in (("GET", "/admin/keys", None), ("POST", "/admin/keys", {"user": "x"}),
                                   ("DELETE", f"/admin/keys/{keys.records['bob'].id}", None)):
            answer = await fetch(base + path, method, body, headers=headers)
            assert answer.code == 403 and json_of(answer)["code"] == "forbidden"
    # Without --admin-token the API exists but answers nobody.
    base = app_url("keys", keys=KeyRing(keys.store))
    assert (await fetch(base + "/admin/keys", headers=bearer(ADMIN))).code == 403


async def test_metrics_and_access_log_name_the_key_id_never_the_key(keys_url, fetch, keys, caplog) -> None:
    base = keys_url()
    with caplog.at_level("INFO", logger="monoai_tornado.access"):
        assert (await fetch(base + "/model", "POST", {"prompt": "hi"}, headers=bearer(keys.bob))).code == 200
        await fetch(base + "/model", "POST", {"prompt": "hi"}, headers=bearer(keys.revoked))
    bob_id = keys.records["bob"].id
    assert any(f"key={bob_id}" in record.getMessage() for record in caplog.records)
    metrics = (await fetch(base + "/metrics", headers=bearer(ADMIN))).body.decode()
    assert f'monoai_api_key_requests_total{{key_id="{bob_id}"}} 1' in metrics
    everything = caplog.text + metrics
    for secret in (keys.alice, keys.bob, keys.revoked, keys.expired):
        assert secret not in everything


# -- /openapi.json -----------------------------------------------------------------------------

@pytest.mark.parametrize("require", [False, True])
async def test_openapi_documents_keys_and_the_answers_match_it(keys_app, serve, fetch, keys, require) -> None:
    from tests.support.pages_helpers import with_pages
    from tests.support.openapi_doc import documented_at, served_http_paths

    app = keys_app(require=require)
    base = serve(with_pages(app))
    documented = await documented_at(fetch, base)  # a valid OpenAPI 3.1 document
    assert set(documented.doc["paths"]) == served_http_paths(app)
    assert documented.doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    refused = await fetch(base + "/model", "POST", {"prompt": "hi"}, headers=bearer("sk-mt-wrong"))
    documented.check("/model", "post", refused)
    if require:
        documented.check("/model", "post", await fetch(base + "/model", "POST", {"prompt": "hi"}))
    made = await fetch(base + "/admin/keys", "POST", {"user": "erin", "limits": ["5/minute"]}, headers=bearer(ADMIN))
    documented.check("/admin/keys", "post", made)
    documented.check("/admin/keys", "get", await fetch(base + "/admin/keys", headers=bearer(ADMIN)))
    gone = await fetch(base + f"/admin/keys/{json_of(made)['id']}", "DELETE", headers=bearer(ADMIN))
    documented.check("/admin/keys/{key_id}", "delete", gone)
    documented.check("/admin/keys/{key_id}", "delete",
                     await fetch(base + "/admin/keys/key_x", "DELETE", headers=bearer(ADMIN)))


async def test_one_keep_alive_connection_is_checked_on_every_request_whatever_key_it_sends(keys_url, fetch, keys) -> None:
    """Our HTTP/1 server remembers a connection's last key and its hash (an SDK sends the same
    one on every request): a key that changes, is revoked, or goes is still checked each time."""
    import asyncio
    import http.client
    import urllib.parse

    base = keys_url(require=True)
    connection = http.client.HTTPConnection("127.0.0.1", urllib.parse.urlsplit(base).port, timeout=10)

    def post(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        connection.request("POST", "/model", body=json.dumps({"prompt": "hi"}),
                           headers={"Content-Type": "application/json", **headers})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())

    async def user_of(headers: dict[str, str]) -> tuple[int, str | None]:
        status, body = await asyncio.to_thread(post, headers)
        stats = json_of(await fetch(base + "/rate-limit/stats/alice", headers=bearer(ADMIN)))["usage"]
        return status, body.get("code") or str(stats.get("3-per-3600"))

    try:
        assert await user_of(bearer(keys.alice)) == (200, "1")  # alice's own limit counts her
        assert await user_of(bearer(keys.alice)) == (200, "2")  # the same key again, remembered
        assert (await asyncio.to_thread(post, bearer(keys.bob)))[0] == 200  # another key: bob pays
        assert await user_of(bearer(keys.bob)) == (200, "2")
        assert await user_of(bearer(keys.revoked)) == (401, "invalid_api_key")
        assert await user_of({}) == (401, "missing_api_key")
        for _ in range(2):  # Anthropic's clients send x-api-key
            assert (await asyncio.to_thread(post, {"x-api-key": keys.bob}))[0] == 200
        assert await user_of({"x-api-key": keys.revoked}) == (401, "invalid_api_key")
        assert await user_of(bearer(keys.alice)) == (200, "3")
        await keys.store.revoke(keys.records["alice"].id)
        await asyncio.sleep(1.1)  # the key ring looks at the store once a second
        assert await user_of(bearer(keys.alice)) == (401, "invalid_api_key")  # the key remembered, revoked
    finally:
        connection.close()

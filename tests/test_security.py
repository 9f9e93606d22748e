"""Security: nobody spends another user's budget, and hostile input stays harmless."""
from __future__ import annotations

import hashlib
import hmac
import logging

import pytest

from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.http import json_of
from tests.support.ws_helpers import connect, read, read_until_end, send

SECRET = b"server-side secret"


def sign(user: str) -> str:
    return f"{user}.{hmac.new(SECRET, user.encode(), hashlib.sha256).hexdigest()[:16]}"


def signed_id_validator(user_id: str):
    """Accepts ``user.signature`` issued by the server; normalizes to the bare user."""
    user, _, signature = user_id.rpartition(".")
    return user if user and hmac.compare_digest(sign(user), user_id) else False


async def test_another_users_id_cannot_be_borrowed(app_url, fetch):
    limiter = RateLimiter([Limit("request", 1, "minute")])
    url = app_url(rate_limiter=limiter, user_validator=signed_id_validator, reject_invalid_users=True)
    assert (await fetch(url + "/model", "POST", {"prompt": "x", "user_id": sign("alice")})).code == 200
    # Mallory claims to be alice (or forges a signature): refused, and alice's budget is untouched.
    for forged in ["alice", "alice.0000000000000000", sign("alice")[:-1] + "0"]:
        response = await fetch(url + "/model", "POST", {"prompt": "x", "user_id": forged})
        assert response.code == 403 and json_of(response)["code"] == "forbidden"
    assert json_of(await fetch(url + "/rate-limit/stats/alice"))["usage"]["1-per-60"] == 1
    assert json_of(await fetch(url + "/rate-limit/stats/bob"))["usage"]["1-per-60"] == 0


async def test_forbidden_user_on_websocket_keeps_the_connection(app_url):
    url = app_url(user_validator=signed_id_validator, reject_invalid_users=True)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "x", "user_id": "alice"})
    assert (await read(ws))["code"] == "forbidden"
    await send(ws, {"prompt": "x", "user_id": sign("alice")})
    assert (await read_until_end(ws))[-1]["type"] == "complete"


async def test_deeply_nested_json_on_websocket(app_url):
    url = app_url()
    ws = await connect(url, "/model/ws")
    await ws.write_message("[" * 50_000 + "]" * 50_000)
    assert (await read(ws))["code"] == "invalid_json"
    await send(ws, {"prompt": "fine"})
    assert (await read_until_end(ws))[-1]["type"] == "complete"


async def test_prompt_text_is_returned_as_data_not_markup(app_url, fetch):
    url = app_url()
    response = await fetch(url + "/model", "POST", {"prompt": "<script>alert(1)</script>"})
    assert response.headers["Content-Type"].startswith("application/json")
    assert "<script>alert(1)</script>" in json_of(response)["response"]


async def test_slow_loris_is_cut_off(app_url, fetch):
    import asyncio
    import time

    url = app_url(idle_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"POST /model HTTP/1.1\r\nHost: x\r\n")  # headers that never end
    await writer.drain()
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closed the connection
    assert time.monotonic() - started < 5
    writer.close()
    assert (await fetch(url + "/health")).code == 200


@pytest.mark.parametrize("host,origins,warned", [
    ("0.0.0.0", ("*",), True), ("192.0.2.7", ("*",), True), ("::", ("*",), True),
    ("127.0.0.1", ("*",), False), ("localhost", ("*",), False), ("::1", ("*",), False),
    ("0.0.0.0", ("https://app.example",), False),
])
def test_any_origin_beyond_loopback_is_warned_about_at_start(make_app, caplog, host, origins, warned):
    app = make_app(cors_origins=origins)
    with caplog.at_level(logging.WARNING, logger="monoai_tornado"):
        app.log_start(host, 8000)
    assert ("--cors-origin" in caplog.text) is warned

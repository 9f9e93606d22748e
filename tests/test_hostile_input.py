"""Hostile input gets a clear JSON answer, never a 5xx, a traceback or a reset: unpaired
surrogates, odd methods and agent names, refused WebSocket handshakes, malformed requests
and bodies over the server's cap."""
from __future__ import annotations

import json
import logging
import socket

import pytest

from monoai_tornado import DemoBackend
from monoai_tornado.agents import default_agents
from tests.support.http import json_of
from tests.support.ws_helpers import connect, read, read_until_end

SURROGATE_BODIES = [
    '{"prompt": "\\ud800"}',
    '{"prompt": "ok", "user_id": "\\udfff"}',
    '{"prompt": "ok", "extra": ["\\ud83d"], "user_id": "u"}',
    '{"prompt": "ok", "\\udc00": 1}',
]


@pytest.fixture
def app(make_app):
    backend = DemoBackend(delay=0)
    return make_app(model=backend, agents=default_agents(backend))


@pytest.fixture
def url(serve, app):
    return serve(app)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("body", SURROGATE_BODIES)
async def test_unpaired_surrogates_are_invalid_json_everywhere(url, fetch, body, caplog):
    for path in ("/model", "/model/stream", "/agent/assistant", "/agent/assistant/stream"):
        answer = await fetch(url + path, "POST", body)
        assert answer.code == 400 and json_of(answer)["code"] == "invalid_json", path
        sse = await fetch(url + path, "POST", body, headers={"Accept": "text/event-stream"})
        assert sse.code == 400 and json_of(sse)["code"] == "invalid_json", path
    for path in ("/model/ws", "/agent/assistant/ws"):
        ws = await connect(url, path)
        await ws.write_message(body)
        assert (await read(ws))["code"] == "invalid_json"
        await ws.write_message(json.dumps({"prompt": "still here"}))
        assert (await read_until_end(ws))[-1]["type"] == "complete"
        ws.close()
    paired = await fetch(url + "/model", "POST", '{"prompt": "smile \\ud83d\\ude00"}')
    assert paired.code == 200 and "smile \U0001F600" in json_of(paired)["response"]
    no_tracebacks(caplog)


async def test_validate_user_refuses_surrogates(url, fetch):
    answer = await fetch(url + "/validate-user", "POST", '{"user_id": "\\ud800"}')
    assert answer.code == 400 and json_of(answer)["code"] == "invalid_json"


@pytest.mark.parametrize("method", ["TRACE", "BREW", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/model", "/model/stream", "/agent/assistant", "/agent/assistant/stream",
                                  "/model/ws", "/agent/assistant/ws"])
async def test_wrong_methods_are_json_405_and_counted(app, url, fetch, method, path, caplog):
    answer = await fetch(url + path, method, b"{}" if method in ("PUT", "BREW") else None)
    assert answer.code == 405
    assert json_of(answer)["code"] == "method_not_allowed" and answer.headers["Allow"]
    assert answer.headers["Content-Type"].startswith("application/json")
    counted = app.pipeline.metrics.requests
    assert sum(n for (endpoint, status), n in counted.items() if status == "405") == 1
    no_tracebacks(caplog)


@pytest.mark.parametrize("path", ["/agent/%ff", "/agent/%ff/stream", "/agent/%ff/ws", "/agent/%C0%80",
                                  "/rate-limit/stats/%ff"])
async def test_undecodable_names_are_json_400_and_counted(app, url, fetch, path, caplog):
    answer = await fetch(url + path, "POST" if "ws" not in path else "GET", b"{}" if "ws" not in path else None)
    assert answer.code in (400, 404) and json_of(answer)["code"] in ("bad_request", "not_found")
    assert sum(app.pipeline.metrics.requests.values()) == 1
    no_tracebacks(caplog)


WS_HANDSHAKE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


@pytest.mark.parametrize("headers,status,code", [
    ({}, 400, "bad_request"),  # a plain GET: "Can Upgrade only to WebSocket"
    ({"Upgrade": "websocket"}, 400, "bad_request"),  # Connection is not "Upgrade"
    ({**WS_HANDSHAKE, "Sec-WebSocket-Version": "7"}, 426, "upgrade_required"),
    ({k: v for k, v in WS_HANDSHAKE.items() if k != "Sec-WebSocket-Key"}, 400, "bad_request"),
])
async def test_refused_websocket_handshakes_are_json_and_counted(app, url, fetch, headers, status, code):
    answer = await fetch(url + "/model/ws", headers=headers)
    assert answer.code == status and json_of(answer)["code"] == code
    assert answer.headers["Content-Type"].startswith("application/json")
    assert dict(app.pipeline.metrics.requests) == {("model_ws", str(status)): 1}


async def test_a_websocket_version_refusal_names_the_version_served(url, fetch):
    answer = await fetch(url + "/model/ws", headers={**WS_HANDSHAKE, "Sec-WebSocket-Version": "7"})
    assert answer.code == 426 and answer.headers["Sec-WebSocket-Version"] == "13"


async def test_websocket_from_a_refused_origin_is_json_403(app_url, fetch):
    url = app_url(cors_origins=["https://app.example"])
    answer = await fetch(url + "/model/ws", headers={**WS_HANDSHAKE, "Origin": "https://evil.example"})
    assert answer.code == 403 and json_of(answer)["code"] == "forbidden"
    assert answer.headers["Content-Type"].startswith("application/json")


def raw_exchange(port: int, payload: bytes, body_size: int = 0) -> bytes:
    """Send ``payload`` (and ``body_size`` bytes of body) on a raw socket; everything read back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sent = 0
        try:
            while sent < body_size:
                sent += sock.send(b"x" * min(65536, body_size - sent))
        except OSError:
            pass  # the server stopped reading: what matters is what it answered
        answer = b""
        for _ in range(1000):
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return answer


def split_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("payload", [
    b"GARBAGE\r\n\r\n",
    b"POST /model HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n0\r\n\r\n",
    b"POST /model HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    b"POST /model HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
])
async def test_connection_level_400s_are_json(url, payload, io_loop):
    port = int(url.rsplit(":", 1)[1])
    answer = await io_loop.run_in_executor(None, raw_exchange, port, payload)
    status, headers, body = split_answer(answer)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"error": "Malformed HTTP request", "code": "bad_request"}


async def status_and_code_of_a_large_post(url, path, io_loop, size, connection=""):
    """Send ``size`` bytes with their Content-Length to ``path`` on a raw socket: (status, code)."""
    port = int(url.rsplit(":", 1)[1])
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{connection}Content-Length: {size}\r\n\r\n".encode()
    answer = await io_loop.run_in_executor(None, raw_exchange, port, head, size)
    status, headers, body = split_answer(answer)
    return status, json.loads(body)["code"]


@pytest.mark.parametrize("path", ["/model", "/validate-user", "/nowhere"])
@pytest.mark.slow  # takes a second or more
async def test_a_body_over_the_servers_cap_gets_413_not_a_reset(url, path, io_loop):
    """17 MiB announced and sent with Content-Length (the server's cap is 16 MiB)."""
    answer = await status_and_code_of_a_large_post(url, path, io_loop, 17 * 1024 * 1024)
    assert answer == (413, "payload_too_large")


@pytest.mark.parametrize("path", ["/model", "/agent/assistant/stream"])
async def test_a_body_over_the_apps_limit_gets_413_not_a_reset(url, path, io_loop):
    """2 MiB with its Content-Length on a prompt route (limit 1 MiB, under the server's cap)."""
    answer = await status_and_code_of_a_large_post(url, path, io_loop, 2 * 1024 * 1024, "Connection: close\r\n")
    assert answer == (413, "payload_too_large")

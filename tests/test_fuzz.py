"""Fuzzing on 127.0.0.1: generated bodies, headers and paths, raw socket garbage and random
WebSocket frames. Whatever arrives: no 5xx, no traceback, and the server answers normally after.

Generated text includes unpaired UTF-16 surrogates, NUL and runs of one character up to 60,000
long, on every route that takes a body (model, agent, streamed, SSE, /validate-user) and over
both WebSockets."""
from __future__ import annotations

import http.client
import json
import os
import socket
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoai_tornado import Application, DemoBackend
from monoai_tornado.agents import default_agents
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.threaded_server import ThreadedServer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
#: Hundreds of generated requests a test: seconds each (``-m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

#: Any code point, unpaired surrogates (category Cs) and NUL included.
any_character = st.characters(codec=None, categories=None, exclude_categories=())
#: Long runs of one character: what made regular expressions and parsers super-linear.
long_runs = st.builds(lambda char, count: char * count,
                      st.sampled_from(["(", ")", "1", " ", "\x00", "\ud800", "\udfff", "a", "\\", '"', "\u00e9", "-"]),
                      st.integers(1_000, 60_000))
hostile_text = st.text(alphabet=any_character, max_size=50) | long_runs
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | hostile_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(alphabet=any_character, max_size=10),
                                                                 inner, max_size=5),
    max_leaves=20,
)
prompt_bodies = st.fixed_dictionaries(
    {}, optional={"prompt": json_values | hostile_text, "user_id": json_values, "type": json_values})
#: Every route that takes a body, and whether it is asked for server-sent events.
BODY_ROUTES = st.sampled_from([("/model", False), ("/model/stream", False), ("/model/stream", True),
                               ("/agent/assistant", False), ("/agent/assistant/stream", True),
                               ("/validate-user", False)])


def has_lone_surrogate(value) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False


#: The fuzzed server's WebSocket message limit (beyond twice it, Tornado closes with 1009 itself).
MAX_WS_MESSAGE = 256 * 1024


@pytest.fixture(scope="module")
def server(counter):
    backend = DemoBackend(delay=0)
    app = Application("Fuzz", model=backend, agents=default_agents(backend), max_body_size=256 * 1024,
                      max_ws_message_size=MAX_WS_MESSAGE, token_counter=counter,
                      rate_limiter=RateLimiter([Limit("request", 10**9, "minute"), Limit("token", 10**12, "day")]))
    with ThreadedServer(app) as running:
        yield running


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def assert_clean(status: int, body: bytes) -> None:
    assert status < 500, body
    assert b"Traceback" not in body and b"<html" not in body.lower()


def assert_still_serving(port: int) -> None:
    status, body = request(port, "POST", "/model", json.dumps({"prompt": "after the storm"}).encode())
    assert status == 200 and b"after the storm" in body


@FUZZ
@given(body=prompt_bodies | json_values | st.fixed_dictionaries({"user_id": json_values}), route=BODY_ROUTES)
def test_generated_json_bodies(server, body, route):
    path, sse = route
    status, raw = request(server.port, "POST", path, json.dumps(body).encode(),
                          {"Accept": "text/event-stream"} if sse else {})
    assert_clean(status, raw)
    if status != 200:
        assert json.loads(raw)["code"] in {"invalid_json", "missing_prompt", "invalid_user_id", "payload_too_large",
                                           "missing_user_id"}
        return
    assert isinstance(body, dict) and not has_lone_surrogate(body)
    if path == "/validate-user":
        assert json.loads(raw)["valid"] is True
    elif sse:
        assert b"event: complete" in raw and b"event: error" not in raw
    else:
        assert isinstance(body.get("prompt"), str) and body["prompt"].strip()
        usage = json.loads(raw)["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def _messages() -> st.SearchStrategy[Any]:
    content = st.text(max_size=40) | st.none() | st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=20)}),
        max_size=3) | json_values
    message = st.fixed_dictionaries({}, optional={
        "role": st.sampled_from(["system", "user", "assistant", "tool", "developer", "robot"]) | json_values,
        "content": content, "tool_call_id": json_values, "tool_calls": json_values, "name": json_values})
    return st.lists(message, max_size=4) | json_values


chat_bodies = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["monoai-demo", "agent/nobody", "gpt-4o"]) | json_values,
    "messages": _messages(),
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_values}) | json_values,
    "max_tokens": st.integers(-3, 50) | json_values,
    "max_completion_tokens": st.integers(-3, 50) | json_values,
    "temperature": st.floats(allow_nan=True) | json_values,
    "top_p": st.floats(allow_nan=True) | json_values,
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | json_values,
    "user": json_values,
    "tools": st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": st.text(max_size=8) | json_values})}), max_size=2) | json_values,
    "tool_choice": st.sampled_from(["auto", "none", "required", "bogus"]) | json_values,
    "n": st.integers(-1, 3) | json_values,
})

V1_CODES = {"invalid_json", "missing_prompt", "invalid_user_id", "payload_too_large", "model_not_found",
            "tools_not_supported"}


@FUZZ
@given(body=chat_bodies | json_values)
def test_generated_chat_completion_bodies(server, body):
    status, raw = request(server.port, "POST", "/v1/chat/completions", json.dumps(body).encode())
    assert_clean(status, raw)
    if status != 200:
        error = json.loads(raw)["error"]
        assert error["code"] in V1_CODES and error["param"] is None and error["type"] in {
            "invalid_request_error", "not_found_error"}
        return
    assert isinstance(body, dict) and body.get("model") == "monoai-demo"
    if body.get("stream") is True:
        assert raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    else:
        answer = json.loads(raw)
        assert answer["object"] == "chat.completion" and answer["choices"][0]["finish_reason"] in {
            "stop", "length", "tool_calls"}


@FUZZ
@given(raw=st.binary(max_size=600))
def test_generated_raw_bodies(server, raw):
    status, body = request(server.port, "POST", "/model/stream", raw, {"Accept": "text/event-stream"})
    assert_clean(status, body)


@FUZZ
@given(path=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
def test_generated_paths_and_methods(server, path, method):
    status, body = request(server.port, method, "/" + path.lstrip("/"), b"{}" if method != "GET" else None)
    assert_clean(status, body)


@FUZZ
@given(headers=st.dictionaries(
    st.sampled_from(["X-Forwarded-For", "X-Real-IP", "Accept", "Origin", "Authorization", "Content-Type", "X-Junk"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80), max_size=5))
def test_generated_headers(server, headers):
    status, body = request(server.port, "POST", "/model", b'{"prompt": "h"}', headers)
    assert_clean(status, body)


GARBAGE = [
    b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\"",  # truncated body
    b"POST /model HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n0\r\n\r\n",  # bad chunk size
    b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n\xff\xfe\xfd{}\xc3\x28\xa0\xa1",  # invalid UTF-8
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",  # huge header
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS hello on plain HTTP
    b"GARBAGE\r\n\r\n",
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",  # huge request line
    b"POST /model HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /model HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    os.urandom(2048),
]


@pytest.mark.parametrize("payload", GARBAGE, ids=range(len(GARBAGE)))
def test_raw_socket_garbage(server, payload):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        answer = b""
        try:
            sock.sendall(payload)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # ENOTCONN: the server answered and closed first; what it sent is still read
                pass
            while len(answer) < 1_000_000:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            pass  # a reset or a silent server: what came before it is checked below
    if answer.startswith(b"HTTP/1.1 5"):
        pytest.fail(f"server answered {answer[:80]!r}")
    assert b"Traceback" not in answer
    assert_still_serving(server.port)


def ws_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 65536:
        head += bytes([mask_bit | 126]) + struct.pack(">H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", length)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /model/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101")
    return sock


@FUZZ
@given(frames=st.lists(st.tuples(st.sampled_from([0, 1, 2, 3, 8, 9, 10, 11, 15]), st.binary(max_size=300),
                                 st.booleans(), st.booleans()), min_size=1, max_size=4))
def test_random_websocket_frames(server, frames):
    sock = ws_handshake(server.port)
    try:
        for opcode, payload, fin, masked in frames:
            sock.sendall(ws_frame(opcode, payload, fin, masked))
        sock.settimeout(0.2)
        received = b""
        while len(received) < 1_000_000:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass  # the server may close on a protocol violation: that is the right answer
    finally:
        sock.close()
    assert_still_serving(server.port)


@FUZZ
@given(message=prompt_bodies | json_values | st.text(max_size=300) | st.text(alphabet="(1 \x00a", min_size=1000,
                                                                              max_size=60_000),
       path=st.sampled_from(["/model/ws", "/agent/assistant/ws"]))
def test_generated_websocket_messages_keep_the_connection(server, message, path):
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{server.port}{path}", open_timeout=5, close_timeout=2,
                 max_size=None) as ws:
        raw_text = isinstance(message, str) and not has_lone_surrogate(message)  # text frames are UTF-8
        payload = message if raw_text else json.dumps(message)
        ws.send(payload)
        try:
            first = json.loads(ws.recv(timeout=10))
        except ConnectionClosedError as closed:  # JSON escapes can grow a value past twice the limit:
            assert closed.rcvd is not None and closed.rcvd.code == 1009  # Tornado's own close (README)
            assert len(payload.encode("utf-8", "surrogatepass")) > 2 * MAX_WS_MESSAGE
            return
        if "error" in first:
            assert first["code"] in {"invalid_json", "missing_prompt", "invalid_user_id", "nothing_to_cancel",
                                     "message_too_big"}
        else:
            while first.get("type") in ("chunk", "step"):
                first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "complete"
        if first.get("code") != "message_too_big":
            ws.send(json.dumps({"prompt": "still open"}))
            reply = json.loads(ws.recv(timeout=10))
            for _ in range(1000):  # read the whole answer: this client stops reading when 16 wait
                if reply.get("type") not in ("chunk", "step"):
                    break
                reply = json.loads(ws.recv(timeout=10))
            assert reply.get("type") == "complete"


def test_server_answers_normally_after_all_the_fuzzing(server):
    assert_still_serving(server.port)

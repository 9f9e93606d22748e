"""The HTTP/1.1 server side on raw sockets, under both parsers (httptools' and Tornado's own):
pipelined requests answered in order, ``Expect: 100-continue``, HTTP/1.0 keep-alive, ``Connection:
close``, chunked request bodies, unknown methods, oversized heads, and a WebSocket whose first frame
arrives with its handshake."""
from __future__ import annotations

import json
import socket
import time

import pytest

from monoai_tornado import Application
from monoai_tornado.deadlines import DeadlineHTTPServer
from monoai_tornado.http1server.server import FastHTTPServer

PARSERS = ["httptools", "tornado"]


@pytest.fixture(params=PARSERS)
def port(request, serve, make_app) -> int:
    url = serve(make_app(http_parser=request.param))
    return int(url.rsplit(":", 1)[1])


class Reader:
    """Reads HTTP/1.1 answers one after another from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of the next answer."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._more(), f"closed before an answer's head: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
        status = int(lines[0].split()[1])
        if "content-length" in headers:
            size = int(headers["content-length"])
            while len(self.buffer) < size:
                assert self._more()
            body, self.buffer = self.buffer[:size], self.buffer[size:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    assert self._more()
                line, _, self.buffer = self.buffer.partition(b"\r\n")
                size = int(line, 16)
                while len(self.buffer) < size + 2:
                    assert self._more()
                body += self.buffer[:size]
                self.buffer = self.buffer[size + 2:]
                if size == 0:
                    break
        else:
            body = b""
        return status, headers, body

    def closed(self, wait: float = 5.0) -> bool:
        """Whether the server closes the connection (nothing more arrives) within ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            return not self._more()
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def exchange(port: int, *parts: bytes, answers: int = 1, pause: float = 0.0,
             ) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """Send ``parts`` (``pause`` seconds apart), read ``answers`` answers; and whether the server then closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        for part in parts:
            sock.sendall(part)
            if pause:
                time.sleep(pause)
        got = [reader.answer() for _ in range(answers)]
        return got, reader.closed(wait=0.5)


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_pipelined_requests_are_answered_in_order(port, io_loop):
    """Three requests in one write: a GET, a prompt and another GET, each answered, in the order sent."""
    payload = (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + post("/model", b'{"prompt": "first"}')
               + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    answers, closed = await io_loop.run_in_executor(None, lambda: exchange(port, payload, answers=3))
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert json.loads(answers[0][2])["status"] == "ok"
    assert json.loads(answers[1][2])["prompt"] == "first"
    assert json.loads(answers[2][2])["object"] == "list"
    assert not closed  # kept alive


async def test_a_client_that_expects_100_continue_is_told_to_send_its_body(port, io_loop):
    body = b'{"prompt": "after the continue"}'
    head = (f"POST /model HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n").encode()

    def run() -> tuple[bytes, tuple[int, dict[str, str], bytes]]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head)
            interim = sock.recv(64)  # the body is not sent until the server says so
            sock.sendall(body)
            return interim, Reader(sock).answer()

    interim, (status, _, answer) = await io_loop.run_in_executor(None, run)
    assert interim.startswith(b"HTTP/1.1 100")
    assert status == 200 and json.loads(answer)["prompt"] == "after the continue"


async def test_http10_keep_alive_is_kept_and_plain_http10_is_closed(port, io_loop):
    kept = b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    answers, closed = await io_loop.run_in_executor(None, lambda: exchange(port, kept, kept, answers=2))
    assert [a[0] for a in answers] == [200, 200] and answers[0][1]["connection"] == "Keep-Alive" and not closed
    answers, closed = await io_loop.run_in_executor(None, lambda: exchange(port, b"GET /health HTTP/1.0\r\n\r\n"))
    assert answers[0][0] == 200 and closed


async def test_connection_close_is_answered_then_closed(port, io_loop):
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers, closed = await io_loop.run_in_executor(None, lambda: exchange(port, request))
    assert answers[0][0] == 200 and answers[0][1]["connection"] == "close" and closed


async def test_a_chunked_request_body_sent_in_pieces_is_read_whole(port, io_loop):
    head = b"POST /model HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    pieces = [b'{"prompt": ', b'"in three ', b'pieces"}']
    chunks = [b"%x\r\n%b\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    answers, _ = await io_loop.run_in_executor(None, lambda: exchange(port, head, *chunks, pause=0.05))
    assert answers[0][0] == 200 and json.loads(answers[0][2])["prompt"] == "in three pieces"


async def test_a_streamed_answer_is_chunked_and_the_connection_kept(port, io_loop):
    request = post("/model/stream", b'{"prompt": "stream me"}', "Accept: text/event-stream\r\n")
    answers, closed = await io_loop.run_in_executor(
        None, lambda: exchange(port, request, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", answers=2))
    (status, headers, body), (second, _, _) = answers
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert body.count(b"event: chunk") > 1 and b"event: complete" in body
    assert second == 200 and not closed


@pytest.mark.parametrize("method", ["BREW", "M-SEARCH", "PATCH"])
async def test_methods_the_route_does_not_serve_are_json_405(port, io_loop, method):
    request = f"{method} /model HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    answers, _ = await io_loop.run_in_executor(None, lambda: exchange(port, request))
    status, headers, body = answers[0]
    assert status == 405 and json.loads(body)["code"] == "method_not_allowed"


async def test_a_head_over_the_cap_is_refused_in_json_and_closed(serve, make_app, io_loop):
    """Headers past 64 KiB: 431 in JSON (Tornado's own server closes without a word)."""
    port = int(serve(make_app(http_parser="httptools")).rsplit(":", 1)[1])
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    answers, closed = await io_loop.run_in_executor(None, lambda: exchange(port, request))
    status, headers, body = answers[0]
    assert status == 431 and json.loads(body)["code"] == "bad_request" and closed


async def test_a_websocket_frame_sent_with_the_handshake_is_not_lost(port, io_loop):
    """The first frame arrives in the same write as the handshake: the WebSocket still reads it."""
    from tests.test_fuzz import ws_frame

    handshake = (b"GET /model/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    frame = ws_frame(1, json.dumps({"prompt": "early"}).encode())

    def run() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(handshake + frame)
            received = b""
            while b'"complete"' not in received:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
            return received

    received = await io_loop.run_in_executor(None, run)
    assert received.startswith(b"HTTP/1.1 101") and b'"complete"' in received and b"early" in received


async def test_a_refused_websocket_handshake_is_answered_then_closed(port, io_loop):
    handshake = (b"GET /model/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n")
    answers, _ = await io_loop.run_in_executor(None, lambda: exchange(port, handshake))
    assert answers[0][0] == 426


def test_the_parser_is_chosen_by_http_parser():
    assert isinstance(Application(model=None, http_parser="tornado").http_server(), DeadlineHTTPServer)
    assert isinstance(Application(model=None, http_parser="httptools").http_server(), FastHTTPServer)
    assert Application(model=None).http_parser == "httptools"  # auto, with httptools installed
    with pytest.raises(ValueError):
        Application(model=None, http_parser="h2")


@pytest.mark.process
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_server_process_hands_websockets_their_socket_and_leaks_no_descriptor(loop):
    """Under the command line's own loop (uvloop with the fast extra): 40 WebSocket sessions, each
    given its socket by ``detach()``, then plain requests on the same server; every descriptor
    duplicated for a WebSocket is closed once its session ends."""
    import os

    from websockets.sync.client import connect

    from tests.support.processes import post, start_server, stop_server

    pytest.importorskip(loop)
    base, proc = start_server("--event-loop", loop, "--demo-delay", "0", "--no-agents")
    try:
        def descriptors() -> int:
            return len(os.listdir(f"/proc/{proc.pid}/fd"))

        before = descriptors()
        for number in range(40):
            with connect(base.replace("http", "ws") + "/model/ws", open_timeout=5, close_timeout=2) as ws:
                ws.send(json.dumps({"prompt": f"prompt {number}"}))
                while (message := json.loads(ws.recv(timeout=5)))["type"] != "complete":
                    assert message["type"] == "chunk"
        status, answer = post(base + "/model", {"prompt": "after the sockets"})
        assert status == 200 and answer["prompt"] == "after the sockets"
        deadline = time.monotonic() + 5
        while descriptors() > before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert descriptors() <= before + 2  # (the HTTP client's kept connection may still be open)
    finally:
        stop_server(proc)


async def test_pipelined_bodies_beyond_the_read_ahead_are_all_answered(port, io_loop):
    """Three prompts of 700 kB in one write (2.1 MB, past what a connection buffers ahead, 1 MiB):
    reading stops while they wait and goes on as they are taken; each is answered, in order, and
    the connection reads the next request sent after them."""
    bodies = [json.dumps({"prompt": f"{n} " + "x" * 700_000}).encode() for n in range(3)]
    payload = b"".join(post("/model", body) for body in bodies)

    def run() -> tuple[list[tuple[int, dict[str, str], bytes]], tuple[int, dict[str, str], bytes]]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reader = Reader(sock)
            sock.sendall(payload)
            answers = [reader.answer() for _ in range(3)]
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            return answers, reader.answer()

    answers, later = await io_loop.run_in_executor(None, run)
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert [json.loads(body)["prompt"][:2] for _, _, body in answers] == ["0 ", "1 ", "2 "]
    assert later[0] == 200


async def test_a_flood_of_pipelined_requests_is_answered_in_order_and_the_connection_lives_on(port, io_loop):
    """500 requests in 50 writes of 10 (a client pipelining without end): the connection stops
    reading while too many wait (16 at most, past what one read brings), answers them all in order,
    then reads on."""
    batch = b"".join(f"GET /v1/models?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(10))

    def run() -> tuple[list[int], int]:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            reader = Reader(sock)
            for _ in range(50):
                sock.sendall(batch)
            statuses = [reader.answer()[0] for _ in range(500)]
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            return statuses, reader.answer()[0]

    statuses, later = await io_loop.run_in_executor(None, run)
    assert statuses == [200] * 500 and later == 200


async def test_an_open_websocket_keeps_nothing_of_the_http_connection_it_came_from(serve, make_app):
    """Once a WebSocket has its socket, the HTTP/1 connection object (its parser, buffers and
    transport) is let go: 20 open WebSockets hold no ``ServerProtocol`` (an idle WebSocket costs
    what it costs on Tornado's own server)."""
    import gc

    from tornado.websocket import websocket_connect

    from monoai_tornado.http1server.protocol import ServerProtocol

    def protocols() -> int:  # (other tests' connections may still be around: the count may only not grow)
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, ServerProtocol))

    url = serve(make_app(http_parser="httptools", websocket_ping_interval=None))
    before = protocols()
    sockets = [await websocket_connect(url.replace("http", "ws") + "/model/ws") for _ in range(20)]
    try:
        await sockets[0].write_message(json.dumps({"prompt": "still served"}))
        assert json.loads(await sockets[0].read_message())["type"] == "chunk"
        assert protocols() <= before
    finally:
        for ws in sockets:
            ws.close()

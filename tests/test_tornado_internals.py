"""One test per assumption ``monoai_tornado.tornado_internals`` makes about Tornado's private parts.

If a Tornado release changes one of them, the failure names it here.
"""
from __future__ import annotations

import asyncio
from typing import Any

import tornado.httpserver
import tornado.web
import tornado.websocket
from tornado.iostream import IOStream

from monoai_tornado import tornado_internals as internals
from monoai_tornado.deadlines import DeadlineHTTPServer

seen: dict[str, Any] = {}


class Probe(tornado.web.RequestHandler):
    def get(self) -> None:
        seen["stream"] = internals.http_stream(self)
        self.set_status(404)
        seen["reason"] = internals.reason(self)
        self.set_status(200)
        seen["finished_before"] = internals.is_finished(self)
        internals.set_safe_headers(self, {"x-ratelimit-remaining-requests": "7", "RateLimit": '"a";r=7;t=1'})
        self.finish("ok")
        seen["finished_after"] = internals.is_finished(self)


class Socket(tornado.websocket.WebSocketHandler):
    compress = False

    def get_compression_options(self) -> dict[str, Any] | None:
        return {} if self.compress else None

    def open(self) -> None:
        writer = internals.frame_writer(self)
        seen["writer"] = writer
        seen["backed_up"] = internals.websocket_backed_up(self)
        if writer is not None:
            writer(True, 0x1, b"through the frame writer")
        else:
            self.write_message("through write_message")


class CompressedSocket(Socket):
    compress = True


def server() -> tornado.httpserver.HTTPServer:
    app = tornado.web.Application([("/probe", Probe), ("/ws", Socket), ("/wsz", CompressedSocket)])
    return tornado.httpserver.HTTPServer(app)


async def test_a_request_handler_reaches_its_stream_status_reason_and_finished_flag(serve, fetch):
    seen.clear()
    url = serve(server())
    response = await fetch(url + "/probe")
    assert response.body == b"ok"
    assert response.headers["X-Ratelimit-Remaining-Requests"] == "7"  # RequestHandler._headers
    assert response.headers["RateLimit"] == '"a";r=7;t=1'
    assert isinstance(seen["stream"], IOStream)  # HTTP1Connection.stream
    assert seen["reason"] == "Not Found"  # RequestHandler._reason
    assert (seen["finished_before"], seen["finished_after"]) == (False, True)  # RequestHandler._finished


async def test_an_uncompressed_websocket_has_a_frame_writer_that_writes_text_frames(serve):
    seen.clear()
    url = serve(server()).replace("http", "ws", 1)
    ws = await tornado.websocket.websocket_connect(url + "/ws")
    assert await ws.read_message() == "through the frame writer"  # _write_frame(fin, opcode, data)
    assert seen["writer"] is not None
    assert seen["backed_up"] is False  # ws_connection.stream.writing() on an idle socket
    ws.close()


async def test_a_compressed_websocket_has_no_frame_writer(serve):
    seen.clear()
    url = serve(server()).replace("http", "ws", 1)
    ws = await tornado.websocket.websocket_connect(url + "/wsz", compression_options={})
    assert await ws.read_message() == "through write_message"  # _compressor set when negotiated
    assert seen["writer"] is None
    ws.close()


def test_request_timers_can_be_turned_off() -> None:
    app = tornado.web.Application([])
    plain = tornado.httpserver.HTTPServer(app, idle_connection_timeout=5, body_timeout=5)
    assert plain.conn_params.header_timeout == 5 and plain.conn_params.body_timeout == 5
    ours = DeadlineHTTPServer(app, idle_connection_timeout=5, body_timeout=5)
    assert ours.conn_params.header_timeout is None and ours.conn_params.body_timeout is None


async def test_a_request_tornado_cannot_parse_gets_the_bare_400(serve, io_loop):
    import socket

    port = int(serve(server()).rsplit(":", 1)[1])

    def exchange() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GARBAGE\r\n\r\n")
            answer = b""
            for _ in range(100):
                data = sock.recv(4096)
                if not data:
                    return answer
                answer += data
            return answer

    assert await io_loop.run_in_executor(None, exchange) == internals.BARE_BAD_REQUEST


def test_the_body_cap_and_a_stream_that_takes_a_subclass() -> None:
    import socket

    app = tornado.web.Application([])
    assert internals.body_cap(tornado.httpserver.HTTPServer(app, max_body_size=5)) == 5
    assert internals.body_cap(tornado.httpserver.HTTPServer(app)) == 100 * 1024 * 1024

    class Sub(IOStream):
        pass

    left, right = socket.socketpair()
    stream = IOStream(left)
    internals.retype_stream(stream, Sub)
    assert type(stream) is Sub
    stream.close()
    right.close()


class Cleared(tornado.web.RequestHandler):
    """Tornado's own clear() beside reset_response (RequestHandler._headers, _write_buffer,
    _status_code, _reason)."""

    def get(self) -> None:
        self.set_status(404)
        self.write("dropped")
        self.clear()
        seen["tornado"] = (list(self._headers.get_all()), list(self._write_buffer), self._status_code, self._reason)
        self.set_status(404)
        self.write("dropped")
        internals.reset_response(self, "text/html; charset=UTF-8")
        seen["ours"] = (list(self._headers.get_all()), list(self._write_buffer), self._status_code, self._reason)
        self.finish("ok")


async def test_reset_response_leaves_a_handler_as_clear_does(serve, fetch):
    seen.clear()
    app = tornado.web.Application([("/cleared", Cleared)])
    response = await fetch(serve(tornado.httpserver.HTTPServer(app)) + "/cleared")
    assert response.code == 200 and response.body == b"ok"
    without_date = [[(name, value) for name, value in seen[key][0] if name != "Date"] for key in ("tornado", "ours")]
    assert without_date[0] == without_date[1] == [("Server", internals.SERVER_HEADER),
                                                  ("Content-Type", "text/html; charset=UTF-8")]
    assert [name for name, _ in seen["ours"][0]] == [name for name, _ in seen["tornado"][0]]  # same order
    assert seen["ours"][1:] == seen["tornado"][1:] == ([], 200, "OK")


def test_http_date_is_tornados_date_header() -> None:
    from tornado.httputil import format_timestamp

    for now in (0.0, 1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.2, 4_102_444_799.5):
        assert internals.http_date(now) == format_timestamp(now)


def test_a_server_connection_keeps_nagle_off_whatever_tornado_asks() -> None:
    """Tornado turns Nagle's algorithm on after every answer and off at the next finish; our
    server connections keep it off (no setsockopt per request, no answer tail held back)."""
    import socket

    from monoai_tornado.wire import json_errors

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    stream = IOStream(served)
    json_errors(stream)
    stream.set_nodelay(False)  # what HTTP1Connection._finish_request does
    assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    stream.close()
    client.close()
    listener.close()


def test_new_headers_are_the_headers_tornados_own_methods_make() -> None:
    """``new_headers`` fills ``HTTPHeaders``' own fields (``_as_list``, ``_combined_cache``): the
    result reads, combines, copies and changes as one built with ``__setitem__`` and ``add``."""
    from tornado.httputil import HTTPHeaders

    assert internals._HEADERS_LAYOUT  # the layout known: the fast way is the one tested
    pairs = [("content-type", "text/plain"), ("X-Seen", "1"), ("x-seen", "2"), ("Set-Cookie", "a=1"),
             ("set-cookie", "b=2"), ("Content-Length", "5")]
    expected = HTTPHeaders()
    for name, value in pairs:
        if name in expected:
            expected.add(name, value)
        else:
            expected[name] = value
    made = internals.new_headers(pairs)
    assert type(made) is HTTPHeaders
    assert list(made.get_all()) == list(expected.get_all())
    assert dict(made) == dict(expected) == {"Content-Type": "text/plain", "X-Seen": "1,2", "Set-Cookie": "a=1,b=2",
                                            "Content-Length": "5"}
    assert made.get_list("x-seen") == ["1", "2"] and "CONTENT-LENGTH" in made and "Nope" not in made
    assert list(made.copy().get_all()) == list(expected.get_all())
    made.add("X-Seen", "3")
    made["content-length"] = "6"
    del made["Set-Cookie"]
    assert made["X-Seen"] == "1,2,3" and made["Content-Length"] == "6" and "Set-Cookie" not in made
    assert internals.new_headers([]) == HTTPHeaders()


def test_new_headers_on_a_tornado_of_another_layout_take_tornados_way(monkeypatch: Any) -> None:
    pairs = [("content-type", "text/plain"), ("X-Seen", "1"), ("x-seen", "2")]
    fast = internals.new_headers(pairs)
    monkeypatch.setattr(internals, "_HEADERS_LAYOUT", False)
    slow = internals.new_headers(pairs)
    assert list(slow.get_all()) == list(fast.get_all()) == [("Content-Type", "text/plain"), ("X-Seen", "1"),
                                                            ("X-Seen", "2")]


class _Echo(tornado.web.RequestHandler):
    def post(self) -> None:
        self.write(b"got " + self.request.body)


@tornado.web.stream_request_body
class _Streamed(tornado.web.RequestHandler):
    def prepare(self) -> None:
        self.parts: list[bytes] = []

    def data_received(self, chunk: bytes) -> None:
        self.parts.append(chunk)

    def put(self) -> None:
        self.write(b"streamed " + b"".join(self.parts))


class _Fails(tornado.web.RequestHandler):
    def get(self) -> None:
        raise RuntimeError("boom")


async def test_a_task_application_runs_handlers_as_tornado_does() -> None:
    """``TaskApplication`` starts each handler as a plain task: answers, a streamed body, an
    error's 500 are Tornado's; no task is left behind; with debug's caches off, Tornado's way."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.netutil import bind_sockets

    for debug in (False, True):
        app = internals.TaskApplication([("/echo", _Echo), ("/streamed", _Streamed), ("/fails", _Fails)], debug=debug,
                                        autoreload=False)
        server = tornado.httpserver.HTTPServer(app)
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        client = AsyncHTTPClient()
        try:
            echo = await client.fetch(base + "/echo", method="POST", body=b"x")
            streamed = await client.fetch(base + "/streamed", method="PUT", body=b"y" * 100_000)
            failed = await client.fetch(base + "/fails", raise_error=False)
        finally:
            server.stop()
            await server.close_all_connections()
        assert echo.body == b"got x" and streamed.body == b"streamed " + b"y" * 100_000 and failed.code == 500
        assert not internals._running_handlers.get(asyncio.get_running_loop())
        from tornado.httputil import HTTPServerRequest
        assert isinstance(app.get_handler_delegate(HTTPServerRequest(uri="/echo"), _Echo), internals._TaskDelegate)

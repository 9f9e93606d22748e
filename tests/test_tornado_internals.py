"""One test per assumption ``monoai_tornado.tornado_internals`` makes about Tornado's private parts.

If a Tornado release changes one of them, the failure names it here.
"""
from __future__ import annotations

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

"""Connection deadlines: slow headers, slow bodies and idle keep-alive connections are closed,
by one timer for every connection, while requests in time are answered as usual."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.http import json_of

PROMPT = b'{"prompt": "hi"}'


async def _open(url):
    return await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))


async def _closed_within(reader, seconds: float) -> float:
    """Seconds until the server closed the connection (reads what it sent meanwhile)."""
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), seconds):
        pass
    return time.monotonic() - started


async def test_a_body_sent_too_slowly_is_cut_off(serve, make_app, fetch):
    server = make_app(body_timeout=0.5).http_server()
    url = serve(server)
    reader, writer = await _open(url)
    writer.write(b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"prompt\":")  # 90 bytes never come
    await writer.drain()
    assert await _closed_within(reader, 10) < 5
    writer.close()
    assert (await fetch(url + "/health")).code == 200
    assert server.deadlines.watched <= 1  # only the client's idle keep-alive connection


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve, make_app):
    server = make_app(idle_timeout=0.5).http_server()
    url = serve(server)
    reader, writer = await _open(url)
    writer.write(b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(PROMPT), PROMPT))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    assert await _closed_within(reader, 10) < 5  # the answer's body, then the close
    writer.close()


async def test_requests_in_time_are_answered_and_leave_no_deadline_behind(serve, make_app, fetch):
    server = make_app(idle_timeout=30, body_timeout=30).http_server()
    url = serve(server)
    for _ in range(5):  # sequential requests on one keep-alive connection of the client
        response = await fetch(url + "/model", "POST", {"prompt": "hello"})
        assert response.code == 200 and json_of(response)["response"]
    # A connection waits for its next request with an idle deadline, none while it is served.
    reader, writer = await _open(url)
    writer.write(b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                 % (len(PROMPT), PROMPT))
    await writer.drain()
    assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 200")
    writer.close()
    await asyncio.sleep(0.05)
    assert server.deadlines.watched <= 1  # at most the client's idle keep-alive connection


@pytest.mark.slow  # takes a second or more
async def test_a_slow_but_steady_request_within_the_deadlines_is_answered(app_url):
    url = app_url(idle_timeout=2, body_timeout=2)
    reader, writer = await _open(url)
    request = b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        len(PROMPT), PROMPT)
    for piece in (request[:20], request[20:60], request[60:]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.3)
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 200") and b'"response"' in answer
    writer.close()

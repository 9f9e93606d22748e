"""One HTTP/1.1 exchange on an open ``IOStream``: the request written in one piece, the answer read in bulk.

Tornado's ``HTTP1Connection`` reads a chunked body a chunk at a time (a ``read_until`` for
the size line and a ``read_bytes`` for the data, a future each). A model server streams many
small chunks, often several in one TCP segment: here every read takes what the socket holds
(up to :data:`READ_SIZE`) and the payload of all the chunks in it reaches the consumer as one
piece, so the cost of a read no longer grows with the number of chunks in it.

>>> dechunker = Dechunker()
>>> dechunker.feed(b"4\\r\\nHel")
b'Hel'
>>> dechunker.feed(b"l\\r\\n1;ext=1\\r\\no\\r\\n0\\r\\n\\r\\n")
b'lo'
>>> dechunker.done, dechunker.extra
(True, False)
"""
from __future__ import annotations

from typing import Awaitable, Callable

from tornado.httputil import HTTPHeaders, HTTPInputError, ResponseStartLine, parse_response_start_line
from tornado.iostream import IOStream, StreamClosedError

#: Bytes asked of the socket per read.
READ_SIZE = 64 * 1024
#: Longest chunk-size or trailer line.
MAX_LINE = 4096
#: What a chunk size is written with (no sign, no ``0x``: ``int()`` would take those).
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
#: Answers whose status says they have no body.
NO_BODY = (204, 304)

Deliver = Callable[[bytes], "Awaitable[None] | None"]


def request_head(method: str, path: str, headers: HTTPHeaders) -> bytes:
    """The request line and headers of a request, as bytes; ValueError for a header that would split."""
    lines = [f"{method} {path} HTTP/1.1"]
    for name, value in headers.get_all():
        line = f"{name}: {value}"
        if "\n" in line or "\r" in line:
            raise ValueError(f"newline in header {name!r}")
        lines.append(line)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin1")


async def read_head(stream: IOStream, max_size: int) -> tuple[ResponseStartLine, HTTPHeaders]:
    """The status line and headers of the answer (interim 1xx answers skipped)."""
    while True:
        data = await stream.read_until_regex(b"\r?\n\r?\n", max_bytes=max_size)
        text = data.decode("latin1").lstrip("\r\n")
        first, _, rest = text.partition("\n")
        start_line = parse_response_start_line(first.rstrip("\r"))
        headers = HTTPHeaders.parse(rest)
        if not 100 <= start_line.code < 200 or start_line.code == 101:
            return start_line, headers


async def read_body(stream: IOStream, method: str, start_line: ResponseStartLine, headers: HTTPHeaders,
                    deliver: Deliver) -> bool:
    """Read the answer's body to its end, handing its bytes to ``deliver`` as they arrive.

    ``deliver`` may return an awaitable: the socket is not read again until it is done (a
    slow consumer holds the upstream back). Returns whether the body ended where its framing
    said it would, so the connection may carry another request; an answer cut off before its
    end raises :class:`StreamClosedError`, a malformed one :class:`HTTPInputError`.
    """
    if method == "HEAD" or start_line.code in NO_BODY:
        return True
    chunked = headers.get("Transfer-Encoding", "").lower() == "chunked"
    length = headers.get("Content-Length")
    if chunked:
        return await _read_chunked(stream, deliver) and length is None
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            raise HTTPInputError(f"invalid Content-Length {length!r}") from None
        if size < 0:
            raise HTTPInputError(f"invalid Content-Length {length!r}")
        await _read_length(stream, size, deliver)
        return True
    await _read_until_close(stream, deliver)
    return False


async def _read_length(stream: IOStream, size: int, deliver: Deliver) -> None:
    while size > 0:
        data = await stream.read_bytes(min(size, READ_SIZE), partial=True)
        size -= len(data)
        waiting = deliver(data)
        if waiting is not None:
            await waiting


async def _read_until_close(stream: IOStream, deliver: Deliver) -> None:
    while True:
        try:
            data = await stream.read_bytes(READ_SIZE, partial=True)
        except StreamClosedError:
            return
        waiting = deliver(data)
        if waiting is not None:
            await waiting


async def _read_chunked(stream: IOStream, deliver: Deliver) -> bool:
    """Read a chunked body; True unless bytes followed its end (the connection is then not reused)."""
    dechunker = Dechunker()
    while not dechunker.done:
        payload = dechunker.feed(await stream.read_bytes(READ_SIZE, partial=True))
        if payload:
            waiting = deliver(payload)
            if waiting is not None:
                await waiting
    return not dechunker.extra


class Dechunker:
    """Takes a chunked body in pieces of any size; gives back the payload bytes in each piece."""

    def __init__(self) -> None:
        self.done = False
        #: Bytes came after the body's end (nobody asked for them).
        self.extra = False
        self._need = 0
        self._phase = "size"  # size | data | crlf | trailer
        self._line = bytearray()

    def feed(self, data: bytes) -> bytes:
        """The payload carried by ``data``; :class:`HTTPInputError` for a malformed body."""
        out: list[bytes] = []
        position, end = 0, len(data)
        while position < end and not self.done:
            if self._phase == "data":
                take = min(self._need, end - position)
                out.append(data[position:position + take])
                position += take
                self._need -= take
                if self._need == 0:
                    self._phase = "crlf"
                continue
            newline = data.find(b"\n", position)
            if newline < 0:
                self._line += data[position:]
                if len(self._line) > MAX_LINE:
                    raise HTTPInputError("chunk line too long")
                break
            line = bytes(self._line + data[position:newline]).rstrip(b"\r")
            self._line.clear()
            if len(line) > MAX_LINE:
                raise HTTPInputError("chunk line too long")
            position = newline + 1
            self._on_line(line)
        self.extra = self.done and position < end
        return out[0] if len(out) == 1 else b"".join(out)

    def _on_line(self, line: bytes) -> None:
        if self._phase == "crlf":
            if line:
                raise HTTPInputError("chunk data longer than its size")
            self._phase = "size"
        elif self._phase == "size":
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or not HEX_DIGITS.issuperset(size_text):
                raise HTTPInputError(f"invalid chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            self._need = size
            self._phase = "data" if size else "trailer"
        elif not line:  # the empty line after the trailers ends the body
            self.done = True

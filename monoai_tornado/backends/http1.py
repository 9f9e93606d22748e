"""HTTP/1.1 pieces of the upstream client: the request's head, and a chunked body's decoder.

Tornado's ``HTTP1Connection`` reads a chunked body a chunk at a time (a ``read_until`` for
the size line and a ``read_bytes`` for the data, a future each). A model server streams many
small chunks, often several in one TCP segment: :class:`Dechunker` takes whatever the socket
gave (:mod:`.upstream_conn`) and the payload of all the chunks in it reaches the consumer as
one piece, so the cost of a read does not grow with the number of chunks in it.

>>> dechunker = Dechunker()
>>> dechunker.feed(b"4\\r\\nHel")
b'Hel'
>>> dechunker.feed(b"l\\r\\n1;ext=1\\r\\no\\r\\n0\\r\\n\\r\\n")
b'lo'
>>> dechunker.done, dechunker.extra
(True, False)

With httptools installed (the ``fast`` extra), :func:`new_dechunker` gives a
:class:`LlhttpDechunker` instead: the same decoder on llhttp (C), 4x faster on a read of many
chunks, 3x on a read of one.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

from tornado.httputil import HTTPHeaders, HTTPInputError

from ..extras import optional
from ..tornado_internals import new_headers

#: Longest chunk-size or trailer line.
MAX_LINE = 4096
#: What a chunk size is written with (no sign, no ``0x``: ``int()`` would take those).
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
#: Answers whose status says they have no body.
NO_BODY = (204, 304)


def request_head(method: str, path: str, headers: Mapping[str, str], host: str, length: int) -> bytes:
    """The request line and headers of a request with ``Host: host`` and ``Content-Length: length``
    (in place of any ``headers`` hold), as bytes; ValueError for a header that would split."""
    lines = [f"{method} {path} HTTP/1.1"]
    pairs = headers.get_all() if isinstance(headers, HTTPHeaders) else headers.items()
    for name, value in pairs:
        if name.lower() in ("host", "content-length"):
            continue
        line = f"{name}: {value}"
        if "\n" in line or "\r" in line:
            raise ValueError(f"newline in header {name!r}")
        lines.append(line)
    lines.append(f"Host: {host}")
    lines.append(f"Content-Length: {length}")
    if "\n" in host or "\r" in host:
        raise ValueError("newline in header 'Host'")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin1")


def parse_headers(text: str) -> HTTPHeaders:
    """The header lines of an answer's head (after its status line), as ``HTTPHeaders.parse`` reads them.

    Plain ``Name: value`` lines are read here, several times faster than Tornado's per-line
    checks (an upstream's names and values are taken as they are); a head with anything else (a folded line, a line without a colon, a stray CR,
    space around a name) goes to ``HTTPHeaders.parse``, for its exact values and errors.
    """
    pairs = []
    for line in text.split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name[-1] in " \t" or name[0] in " \t" or "\r" in line:
            return HTTPHeaders.parse(text)
        pairs.append((name, value.strip(" \t")))
    return new_headers(pairs)  # a repeated name: Tornado's list of values


class Dechunker:
    """Takes a chunked body in pieces of any size; gives back the payload bytes in each piece."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> bool:
        """Read the connection's next body from its start: True."""
        self.done = False
        #: Bytes came after the body's end (nobody asked for them).
        self.extra = False
        self._need = 0
        self._phase = "size"  # size | data | crlf | trailer
        self._line = bytearray()
        return True

    def feed(self, data: bytes) -> bytes:
        """The payload carried by ``data``; :class:`HTTPInputError` for a malformed body."""
        out: list[bytes] = []
        position, end = 0, len(data)
        while position < end and not self.done:
            if self._phase == "size" and not self._line:  # a whole small chunk at once: size, data, CRLF
                newline = data.find(b"\r\n", position, position + 10)
                if newline > position:
                    size_text = data[position:newline]
                    if HEX_DIGITS.issuperset(size_text):
                        start = newline + 2
                        stop = start + int(size_text, 16)
                        if stop > start and data[stop:stop + 2] == b"\r\n":
                            out.append(data[start:stop])
                            position = stop + 2
                            continue
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


class ChunkedBody(Protocol):
    """What reads a chunked body: :class:`Dechunker` or :class:`LlhttpDechunker`."""

    done: bool
    extra: bool

    def feed(self, data: bytes) -> bytes:
        ...

    def restart(self) -> bool:
        """Get ready for the next body on the same connection, the last one having ended well;
        False when this reader cannot (make another)."""
        ...


_httptools = optional("httptools")
if _httptools is not None and not hasattr(_httptools.HttpResponseParser, "set_dangerous_leniencies"):
    _httptools = None  # before 0.6.2: the Python decoder
#: The head llhttp is given before a body, so that it reads what follows as a chunked body.
_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class LlhttpDechunker:
    """:class:`Dechunker` on llhttp (httptools' response parser, C): the same payload, end and
    bytes after the end for every well-formed body, cut anywhere (``tests/test_http1.py`` feeds
    both the same bodies). Two differences, both on bodies no server should send: llhttp refuses
    a few malformed ones that :class:`Dechunker` lets through (a chunk's data ended by
    ``\\r\\r\\n``, a trailer line that is not a header), and it skips bare CRLFs after the end (as it
    does between the answers of one connection) where :class:`Dechunker` counts them as extra."""

    __slots__ = ("done", "extra", "_parser", "_out")

    def __init__(self) -> None:
        assert _httptools is not None, "LlhttpDechunker needs httptools (the fast extra)"
        self.done = False
        #: Bytes came after the body's end (nobody asked for them).
        self.extra = False
        self._out: list[bytes] = []
        self._parser: Any = _httptools.HttpResponseParser(self)
        # What Dechunker takes too: a bare LF for a CRLF, spaces after a chunk's size.
        self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True,
                                              lenient_spaces_after_chunk_size=True)
        self._parser.feed_data(_CHUNKED_HEAD)

    def restart(self) -> bool:
        """Read the connection's next body with the same parser (a third of the cost of a new
        one): True when the last body ended with nothing after it, as llhttp then waits for
        another answer."""
        if not self.done or self.extra:
            return False
        self.done = False
        self._parser.feed_data(_CHUNKED_HEAD)
        return True

    # -- llhttp's callbacks

    def on_body(self, body: bytes) -> None:
        self._out.append(body)

    def on_message_complete(self) -> None:
        self.done = True

    def on_message_begin(self) -> None:
        if self.done:  # another message after the end: bytes nobody asked for
            self.extra = True

    # --

    def feed(self, data: bytes) -> bytes:
        """The payload carried by ``data``; :class:`HTTPInputError` for a malformed body."""
        if self.done:
            self.extra = self.extra or bool(data)
            return b""
        out = self._out
        try:
            self._parser.feed_data(data)
        except _httptools.HttpParserError as exc:  # type: ignore[union-attr]
            if not self.done:
                out.clear()
                raise HTTPInputError(f"malformed chunked body: {exc}") from None
            self.extra = True  # what came after the end is no answer of ours
        if not out:
            return b""
        payload = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return payload


def new_dechunker() -> ChunkedBody:
    """The chunked body reader: llhttp's when httptools is installed, else :class:`Dechunker`."""
    return LlhttpDechunker() if _httptools is not None else Dechunker()

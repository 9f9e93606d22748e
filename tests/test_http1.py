"""The upstream answer reader (monoai_tornado/backends/http1.py): chunked bodies cut anywhere, and bad ones."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httputil import HTTPInputError

from monoai_tornado.backends.http1 import Dechunker

BODY = (b"4\r\nWiki\r\n6;name=value\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n"
        b"Trailer: yes\r\n\r\n")
PAYLOAD = b"Wikipedia in \r\n\r\nchunks."


def feed_in_pieces(body: bytes, cuts: list[int]) -> tuple[bytes, Dechunker]:
    dechunker = Dechunker()
    out, start = [], 0
    for cut in [*cuts, len(body)]:
        out.append(dechunker.feed(body[start:cut]))
        start = cut
    return b"".join(out), dechunker


def test_a_body_in_one_piece_gives_its_payload_and_ends() -> None:
    payload, dechunker = feed_in_pieces(BODY, [])
    assert payload == PAYLOAD
    assert dechunker.done and not dechunker.extra


def test_a_body_cut_at_every_byte_gives_the_same_payload() -> None:
    payload, dechunker = feed_in_pieces(BODY, list(range(1, len(BODY))))
    assert payload == PAYLOAD and dechunker.done


def test_a_body_cut_at_random_places_gives_the_same_payload() -> None:
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(BODY)), rng.randint(1, 12)))
        payload, dechunker = feed_in_pieces(BODY, cuts)
        assert payload == PAYLOAD and dechunker.done, cuts


def test_bytes_after_the_end_are_noticed() -> None:
    dechunker = Dechunker()
    assert dechunker.feed(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n") == b"ok"
    assert dechunker.done and dechunker.extra


def test_a_body_not_yet_ended_is_not_done() -> None:
    dechunker = Dechunker()
    assert dechunker.feed(b"2\r\nok\r\n0\r\n") == b"ok"
    assert not dechunker.done


@pytest.mark.parametrize("body", [
    b"zz\r\nxx\r\n",             # a size that is not hexadecimal
    b"-2\r\nxx\r\n",             # a negative size
    b"0x2\r\nxx\r\n",            # a prefix int() would take
    b"2\r\nxxx\r\n0\r\n\r\n",    # data longer than its size
    b"1" * 5000,                 # a size line without end
    b"",
])
def test_a_malformed_body_is_an_input_error_not_a_crash(body: bytes) -> None:
    dechunker = Dechunker()
    if not body:
        assert dechunker.feed(body) == b"" and not dechunker.done
        return
    with pytest.raises(HTTPInputError):
        dechunker.feed(body)


def _outcome(body: bytes, cuts: list[int]) -> tuple[bytes, bool, bool] | str:
    try:
        payload, dechunker = feed_in_pieces(body, cuts)
    except HTTPInputError:
        return "error"
    return payload, dechunker.done, dechunker.extra


#: A chunk: its data, how its size is written, what ends it; mostly well formed (so that a read
#: often holds many whole chunks), sometimes not.
_CHUNK = st.tuples(
    st.binary(min_size=1, max_size=40) | st.sampled_from([b"data: {}\n\n"] * 6 + [b"a\r\nb", b"\r\n", b"x\r"]),
    st.sampled_from(["%x"] * 8 + ["%X", "%04x", "%x;ext=1", "0x%x", "+%x", "%x ", "%d"]),
    st.sampled_from([b"\r\n"] * 12 + [b"\n", b"xx"]),
)


@given(chunks=st.lists(_CHUNK, max_size=12), end=st.sampled_from([b"0\r\n\r\n", b"0\r\nT: 1\r\n\r\n", b"", b"0\r\n"]),
       extra=st.sampled_from([b"", b"HTTP/1.1"]), data=st.data())
@settings(max_examples=400, deadline=None)
def test_many_chunks_in_one_read_give_what_one_byte_at_a_time_gives(chunks, end, extra, data) -> None:
    """A read of many whole chunks takes each in one step (size, data and CRLF at once); fed a
    byte at a time, the same body goes line by line: both ways agree on the payload, the end,
    the bytes after it and every malformed size or data (sizes in any case, with leading zeros,
    extensions, ``0x`` and signs; data holding CRLFs; a chunk's end not a CRLF)."""
    body = b"".join((form % len(chunk)).encode() + b"\r\n" + chunk + crlf for chunk, form, crlf in chunks) + end + extra
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4)))) if len(body) > 1 else []
    assert _outcome(body, cuts) == _outcome(body, list(range(1, len(body))))

"""The upstream answer reader (monoai_tornado/backends/http1.py): chunked bodies cut anywhere, and bad ones,
read by both decoders (Python's and llhttp's), which agree."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httputil import HTTPInputError

from monoai_tornado.backends.http1 import ChunkedBody, Dechunker, LlhttpDechunker, new_dechunker

pytest.importorskip("httptools")

#: Both chunked body readers: each test holds for each.
DECODERS = [Dechunker, LlhttpDechunker]

BODY = (b"4\r\nWiki\r\n6;name=value\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n"
        b"Trailer: yes\r\n\r\n")
PAYLOAD = b"Wikipedia in \r\n\r\nchunks."


def feed_in_pieces(body: bytes, cuts: list[int], decoder: type[ChunkedBody] = Dechunker) -> tuple[bytes, ChunkedBody]:
    dechunker = decoder()
    out, start = [], 0
    for cut in [*cuts, len(body)]:
        out.append(dechunker.feed(body[start:cut]))
        start = cut
    return b"".join(out), dechunker


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_body_in_one_piece_gives_its_payload_and_ends(decoder: type[ChunkedBody]) -> None:
    payload, dechunker = feed_in_pieces(BODY, [], decoder)
    assert payload == PAYLOAD
    assert dechunker.done and not dechunker.extra


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_body_cut_at_every_byte_gives_the_same_payload(decoder: type[ChunkedBody]) -> None:
    payload, dechunker = feed_in_pieces(BODY, list(range(1, len(BODY))), decoder)
    assert payload == PAYLOAD and dechunker.done


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_body_cut_at_random_places_gives_the_same_payload(decoder: type[ChunkedBody]) -> None:
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(BODY)), rng.randint(1, 12)))
        payload, dechunker = feed_in_pieces(BODY, cuts, decoder)
        assert payload == PAYLOAD and dechunker.done, cuts


@pytest.mark.parametrize("decoder", DECODERS)
def test_bytes_after_the_end_are_noticed(decoder: type[ChunkedBody]) -> None:
    dechunker = decoder()
    assert dechunker.feed(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n") == b"ok"
    assert dechunker.done and dechunker.extra


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_body_not_yet_ended_is_not_done(decoder: type[ChunkedBody]) -> None:
    dechunker = decoder()
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
@pytest.mark.parametrize("decoder", DECODERS)
def test_a_malformed_body_is_an_input_error_not_a_crash(body: bytes, decoder: type[ChunkedBody]) -> None:
    dechunker = decoder()
    if not body:
        assert dechunker.feed(body) == b"" and not dechunker.done
        return
    with pytest.raises(HTTPInputError):
        dechunker.feed(body)


def _outcome(body: bytes, cuts: list[int], decoder: type[ChunkedBody] = Dechunker) -> tuple[bytes, bool, bool] | str:
    try:
        payload, dechunker = feed_in_pieces(body, cuts, decoder)
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


@pytest.mark.parametrize("decoder", DECODERS)
@given(chunks=st.lists(_CHUNK, max_size=12), end=st.sampled_from([b"0\r\n\r\n", b"0\r\nT: 1\r\n\r\n", b"", b"0\r\n"]),
       extra=st.sampled_from([b"", b"HTTP/1.1"]), data=st.data())
@settings(max_examples=400, deadline=None)
def test_many_chunks_in_one_read_give_what_one_byte_at_a_time_gives(decoder, chunks, end, extra, data) -> None:
    """A read of many whole chunks takes each in one step (size, data and CRLF at once); fed a
    byte at a time, the same body goes line by line: both ways agree on the payload, the end,
    the bytes after it and every malformed size or data (sizes in any case, with leading zeros,
    extensions, ``0x`` and signs; data holding CRLFs; a chunk's end not a CRLF)."""
    body = b"".join((form % len(chunk)).encode() + b"\r\n" + chunk + crlf for chunk, form, crlf in chunks) + end + extra
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4)))) if len(body) > 1 else []
    assert _outcome(body, cuts, decoder) == _outcome(body, list(range(1, len(body))), decoder)


#: Well-formed chunks only: what a server sends.
_GOOD_CHUNK = st.tuples(st.binary(min_size=1, max_size=40) | st.sampled_from([b"data: {}\n\n", b"a\r\nb", b"\r\n"]),
                        st.sampled_from(["%x", "%X", "%04x", "%x;ext=1", "%x "]), st.sampled_from([b"\r\n", b"\n"]))


#: How a well-formed body ends: whole (perhaps with bytes after it), or not yet.
_ENDS = st.sampled_from([end + extra for end in (b"0\r\n\r\n", b"0\r\nT: 1\r\n\r\n")
                         for extra in (b"", b"HTTP/1.1 200 OK\r\n", b"x")] + [b"", b"0\r\n"])


@given(chunks=st.lists(_GOOD_CHUNK, max_size=12), end=_ENDS, data=st.data())
@settings(max_examples=400, deadline=None)
def test_both_decoders_read_a_well_formed_body_alike(chunks, end, data) -> None:
    """llhttp's decoder gives what the Python one gives, read in one piece or cut anywhere:
    the payload, the end, and the bytes after it."""
    body = b"".join((form % len(chunk)).encode() + b"\r\n" + chunk + crlf for chunk, form, crlf in chunks) + end
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4)))) if len(body) > 1 else []
    expected = _outcome(body, cuts)
    assert expected != "error"
    assert _outcome(body, cuts, LlhttpDechunker) == expected


@given(chunks=st.lists(_CHUNK, max_size=12), end=st.sampled_from([b"0\r\n\r\n", b"0\r\nT: 1\r\n\r\n", b"", b"0\r\n"]),
       extra=st.sampled_from([b"", b"HTTP/1.1"]), data=st.data())
@settings(max_examples=400, deadline=None)
def test_what_the_python_decoder_refuses_llhttp_refuses(chunks, end, extra, data) -> None:
    """Any body, malformed ones too: llhttp is at least as strict (it refuses a few that the
    Python decoder lets through: a chunk's data ended by a CR and a CRLF, a trailer that is no header)."""
    body = b"".join((form % len(chunk)).encode() + b"\r\n" + chunk + crlf for chunk, form, crlf in chunks) + end + extra
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4)))) if len(body) > 1 else []
    python, llhttp = _outcome(body, cuts), _outcome(body, cuts, LlhttpDechunker)
    assert llhttp == python or llhttp == "error"


def test_bare_crlfs_after_the_end_are_skipped_by_llhttp() -> None:
    """The one difference on a well-formed body: CRLFs after its end, which llhttp skips as it
    does between the answers of a connection (the connection is kept; nothing is lost)."""
    body = b"2\r\nok\r\n0\r\n\r\n\r\n"
    assert _outcome(body, []) == (b"ok", True, True)
    assert _outcome(body, [], LlhttpDechunker) == (b"ok", True, False)


def test_the_upstream_reads_with_llhttp_when_httptools_is_installed() -> None:
    assert isinstance(new_dechunker(), LlhttpDechunker)


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_reader_restarted_reads_the_next_body_of_the_connection(decoder: type[ChunkedBody]) -> None:
    dechunker = decoder()
    assert dechunker.feed(BODY) == PAYLOAD and dechunker.done
    for cuts in ([], list(range(1, len(BODY)))):
        assert dechunker.restart()
        assert not dechunker.done
        out, start = [], 0
        for cut in [*cuts, len(BODY)]:
            out.append(dechunker.feed(BODY[start:cut]))
            start = cut
        assert b"".join(out) == PAYLOAD and dechunker.done and not dechunker.extra


def test_llhttp_is_not_restarted_after_a_broken_body_or_bytes_after_the_end() -> None:
    """A parser that saw an error, or bytes after the end, is replaced (``restart`` says False)."""
    broken = LlhttpDechunker()
    with pytest.raises(HTTPInputError):
        broken.feed(b"zz\r\n")
    assert not broken.restart()
    extra = LlhttpDechunker()
    extra.feed(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert extra.extra and not extra.restart()
    unfinished = LlhttpDechunker()
    unfinished.feed(b"2\r\nok\r\n")
    assert not unfinished.restart()

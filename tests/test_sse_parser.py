"""The incremental server-sent events parser: splits anywhere, line endings, comments, fields."""
from __future__ import annotations

from typing import Any

import pytest

from monoai_tornado.backends.sse import ServerSentEvent, SSEError, SSEParser

STREAM = (
    ": hello, this is a comment\n"
    "data: {\"a\": 1}\n\n"
    "event: update\nid: 7\nretry: 1500\ndata: first line\ndata:second line\n\n"
    "data: caf\u00e9 \u2603 \U0001f600\n\n"
    "data: [DONE]\n\n"
)
EXPECTED = [
    ServerSentEvent('{"a": 1}'),
    ServerSentEvent("first line\nsecond line", "update", "7", 1500),
    ServerSentEvent("caf\u00e9 \u2603 \U0001f600", "message", "7", 1500),
    ServerSentEvent("[DONE]", "message", "7", 1500),
]


def feed_all(parser: SSEParser, pieces: list[bytes]) -> list[ServerSentEvent]:
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return events + parser.close()


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_whole_stream_with_every_line_ending(newline: str) -> None:
    data = STREAM.replace("\n", newline).encode()
    assert feed_all(SSEParser(), [data]) == EXPECTED


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_split_at_every_byte_position(newline: str) -> None:
    data = STREAM.replace("\n", newline).encode()
    for cut in range(len(data) + 1):
        assert feed_all(SSEParser(), [data[:cut], data[cut:]]) == EXPECTED, cut


def test_one_byte_at_a_time_including_inside_utf8_characters() -> None:
    data = STREAM.replace("\n", "\r\n").encode()
    assert feed_all(SSEParser(), [data[i:i + 1] for i in range(len(data))]) == EXPECTED


def test_events_are_returned_as_soon_as_their_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\n") == []
    assert parser.has_partial_event
    assert parser.feed(b"\ndata: tw") == [ServerSentEvent("one")]
    assert parser.feed(b"o\n\n") == [ServerSentEvent("two")]
    assert not parser.has_partial_event


def test_cr_at_the_end_of_a_chunk_then_lf_is_one_line_break() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r") == [ServerSentEvent("x")]
    assert parser.feed(b"\ndata: y\r\n\r\n") == [ServerSentEvent("y")]


def test_comments_and_empty_data_and_unknown_fields() -> None:
    parser = SSEParser()
    assert parser.feed(b":\n: keep-alive\n\n\n\nfoo: bar\n\n") == []
    assert parser.feed(b"data\n\n") == [ServerSentEvent("")]
    assert parser.feed(b"data:\ndata:\n\n") == [ServerSentEvent("\n")]
    assert parser.feed(b"event: x\n\n") == []  # no data: no event, and the type is reset
    assert parser.feed(b"data: y\n\n") == [ServerSentEvent("y")]


def test_only_one_leading_space_is_dropped() -> None:
    assert SSEParser().feed(b"data:  two spaces\n\n") == [ServerSentEvent(" two spaces")]


def test_retry_must_be_digits_and_id_with_nul_is_ignored() -> None:
    parser = SSEParser()
    events = parser.feed(b"retry: 1e3\nid: a\0b\ndata: z\n\n")
    assert events == [ServerSentEvent("z", "message", None, None)]


def test_byte_order_mark_is_dropped_at_the_start_only() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef\xbb") == []
    assert parser.feed(b"\xbfdata: a\n\n") == [ServerSentEvent("a")]
    assert parser.feed("\ufeffdata: b\n\n".encode()) == []  # "\ufeffdata" is an unknown field


def test_close_returns_an_unterminated_event_for_the_caller_to_judge() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]") == []
    assert parser.close() == [ServerSentEvent("[DONE]")]
    assert SSEParser().close() == []


def test_str_input_is_accepted() -> None:
    assert SSEParser().feed("data: \u00e9\n\n") == [ServerSentEvent("\u00e9")]


def test_invalid_utf8_is_an_error() -> None:
    with pytest.raises(SSEError, match="UTF-8"):
        SSEParser().feed(b"data: \xff\xfe\n\n")
    parser = SSEParser()
    parser.feed(b"data: \xe2\x98")
    with pytest.raises(SSEError, match="UTF-8"):
        parser.close()


def test_an_event_over_the_size_limit_is_an_error() -> None:
    parser = SSEParser(max_event_size=100)
    parser.feed(b"data: " + b"x" * 60 + b"\n")
    with pytest.raises(SSEError, match="larger than 100"):
        parser.feed(b"data: " + b"y" * 60)
    with pytest.raises(SSEError):
        SSEParser(max_event_size=10).feed(b"z" * 11)


class LineByLine(SSEParser):
    """The parser without its fast path for whole one-line events: the reference it must agree with."""

    def _feed_whole_events(self, text: str) -> list[ServerSentEvent]:
        return self._feed_lines(text)


PIECES = ["data: {\"a\": 1}\n\n", "data:{}\n\n", "data:  two spaces\n\n", "data\n\n", "data:\n\n", ": note\n\n",
          "id: 9\n\n", "retry: 20\n\n", "event: e\ndata: x\n\n", "data: a\ndata: b\n\n", "\n", "\n\n",
          "data: [DONE]\n\n", "x: y\n\n", "data: caf\u00e9\n\n", "data: tail without end", "data: cr\r\n\r\n",
          "data: " + "z" * 40 + "\n\n"]


def outcome(parser: SSEParser, pieces: list[bytes]) -> list[ServerSentEvent] | str:
    """The events of ``pieces`` fed in turn, or the error."""
    try:
        return feed_all(parser, pieces)
    except SSEError as exc:
        return str(exc)


def cut(stream: bytes, rng: Any, most: int) -> list[bytes]:
    """``stream`` cut at up to ``most`` random places."""
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, most))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]


def test_the_fast_path_for_whole_events_gives_what_the_line_by_line_parser_gives() -> None:
    import random
    rng = random.Random(11)
    for _ in range(300):
        stream = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12))).encode()
        pieces = cut(stream, rng, 4)
        assert outcome(SSEParser(max_event_size=44), pieces) == outcome(LineByLine(max_event_size=44), pieces), stream


class LinesFirst(SSEParser):
    """Every chunk offered to ``feed_data_lines`` first, as the OpenAI backend does, then to ``feed``."""

    lines_reads = 0

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        if isinstance(chunk, bytes):
            lines = self.feed_data_lines(chunk)
            if lines is not None:
                LinesFirst.lines_reads += 1
                datas = lines[0].decode("utf-8").split("\n")
                assert len(datas) == lines[1]
                return self.events_of(datas)
        return super().feed(chunk)


def test_the_data_lines_shortcut_gives_what_the_line_by_line_parser_gives() -> None:
    """``feed_data_lines`` (data of whole one-line ``data: `` events as lines of bytes, no event
    objects) agrees with the parser, or declines and consumes nothing; with multi-byte
    characters cut between reads too."""
    import random
    rng = random.Random(12)
    plain = ["data: {\"a\": 1}\n\n", "data:{}\n\n", "data: caf\u00e9\n\n", "data: [DONE]\n\n", "data:\n\n",
             "data: \n\n"]
    for _ in range(400):
        pieces_of = plain if rng.random() < 0.6 else PIECES
        stream = "".join(rng.choice(pieces_of) for _ in range(rng.randint(1, 12))).encode()
        if rng.random() < 0.2:
            stream = "\ufeff".encode() + stream  # a byte order mark: feed's to drop
        pieces = cut(stream, rng, 3)
        assert outcome(LinesFirst(max_event_size=44), pieces) == outcome(LineByLine(max_event_size=44), pieces), stream
    assert LinesFirst.lines_reads > 10  # the shortcut was taken, not only declined

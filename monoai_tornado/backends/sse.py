"""An incremental parser of server-sent events (the WHATWG ``text/event-stream`` format).

Bytes go in as the network delivers them, split anywhere (inside a line, inside a UTF-8
character, between the ``\\r`` and ``\\n`` of a CRLF); whole events come out once their
terminating blank line has arrived::

    >>> parser = SSEParser()
    >>> parser.feed(b"data: hel")
    []
    >>> parser.feed(b"lo\\r\\n\\r\\n: a comment\\n\\ndata: [DONE]\\n\\n")
    [ServerSentEvent(data='hello', event='message', id=None, retry=None), \
ServerSentEvent(data='[DONE]', event='message', id=None, retry=None)]

Comments (lines starting with ``:``) and unknown fields are ignored, ``data`` lines of one
event are joined with ``\\n``, and one space after the colon is dropped, as the standard says.
"""
from __future__ import annotations

import codecs
from typing import NamedTuple

#: The incremental UTF-8 decoder's class (looked up once).
_UTF8_DECODER = codecs.getincrementaldecoder("utf-8")

#: Largest event (its data plus the line being read) accepted, in characters.
DEFAULT_MAX_EVENT_SIZE = 8 * 1024 * 1024


class SSEError(ValueError):
    """The stream is not a valid event stream (an event over the size limit, bad UTF-8)."""


class ServerSentEvent(NamedTuple):
    """One dispatched event (a tuple: made several times per answer, cheaper than a frozen dataclass)."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Turns chunks of an event stream into :class:`ServerSentEvent` objects, in order.

    One parser reads one stream; it keeps the partial line and event between calls.
    """

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self.max_event_size = max_event_size
        #: Made by the first bytes :meth:`feed` reads (the common stream never needs one).
        self._decoder: codecs.IncrementalDecoder | None = None
        self._line = ""  # the current, unterminated line
        self._after_cr = False  # the last character seen was a CR (its LF may follow)
        self._started = False  # a BOM is only dropped at the very start
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def has_partial_event(self) -> bool:
        """Whether a line or event has started and not been terminated yet."""
        return bool(self._line or self._data or self._event)

    @property
    def _inside_a_character(self) -> bool:
        """Whether the last bytes :meth:`feed` read ended inside a UTF-8 character."""
        return self._decoder is not None and bool(self._decoder.getstate()[0])

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        """Parse ``chunk`` and return the events it completed (often none, sometimes many)."""
        if isinstance(chunk, bytes):
            try:
                if self._decoder is None:
                    self._decoder = _UTF8_DECODER(errors="strict")
                text = self._decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise SSEError(f"event stream is not valid UTF-8: {exc.reason}") from None
        else:
            text = chunk
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if "\r" not in text and not (self.has_partial_event or self._after_cr):
            return self._feed_whole_events(text)
        return self._feed_lines(text)

    def feed_data_lines(self, chunk: bytes) -> tuple[bytes, int] | None:
        """The data of the events of ``chunk``, one per line, and how many, when it is the common
        stream (whole events of one ``data: `` line each, no CR, valid UTF-8, the parser between
        events before it): without event objects nor a step per event, the data of the events
        :meth:`feed` would give (:meth:`events_of` makes them). None otherwise, and nothing was
        consumed: give ``chunk`` to :meth:`feed`."""
        if (len(chunk) > self.max_event_size or not chunk.startswith(b"data: ") or not chunk.endswith(b"\n\n")
                or b"\r" in chunk or self.has_partial_event or self._after_cr or self._inside_a_character):
            return None
        body = chunk[6:-2]
        count = body.count(b"\n\ndata: ") + 1
        if body.count(b"\n") != 2 * count - 2:  # a LF that is not between two events
            return None
        if not chunk.isascii():
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                return None
        self._started = True
        return body.replace(b"\n\ndata: ", b"\n"), count

    def events_of(self, datas: list[str]) -> list[ServerSentEvent]:
        """The events of ``datas`` (what :meth:`feed_data_lines` gave, split at its LFs)."""
        return [ServerSentEvent(data, "message", self._last_id, self._retry) for data in datas]

    def _feed_whole_events(self, text: str) -> list[ServerSentEvent]:
        """The common case, an event per ``data:`` line ended by a blank line, without a line loop.

        Called at an event boundary with text that has no CR: each block before a blank line
        that is one ``data`` line is an event at once; any other block, and the unterminated
        tail, go through :meth:`_feed_lines`, so the result is the same as its own.
        """
        events: list[ServerSentEvent] = []
        *blocks, tail = text.split("\n\n")
        for block in blocks:
            if block.startswith("data:") and "\n" not in block:
                if len(block) > self.max_event_size:  # the check _feed_lines makes on the line
                    raise SSEError(f"server-sent event larger than {self.max_event_size} characters")
                value = block[6:] if block.startswith("data: ") else block[5:]
                events.append(ServerSentEvent(value, "message", self._last_id, self._retry))
            elif block:
                events += self._feed_lines(block + "\n\n")
        if tail:
            events += self._feed_lines(tail)
        return events

    def _feed_lines(self, text: str) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        start = 0
        length = len(text)
        if self._after_cr and length and text[0] == "\n":
            start = 1  # the LF of a CRLF split across chunks
        self._after_cr = False
        while start < length:
            cr = text.find("\r", start)
            lf = text.find("\n", start)
            if cr < 0 and lf < 0:
                self._line += text[start:]
                self._check_size()
                break
            end = lf if cr < 0 else cr if lf < 0 else min(cr, lf)
            self._line += text[start:end]
            self._check_size()
            line, self._line = self._line, ""
            event = self._process_line(line)
            if event is not None:
                events.append(event)
            start = end + 1
            if text[end] == "\r":
                if start < length and text[start] == "\n":
                    start += 1
                elif start == length:
                    self._after_cr = True
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: return the unterminated last event, if it has data.

        The standard discards an event whose blank line never came; some servers end their
        stream right after the last ``data:`` line, so it is returned here for the caller to
        judge (it may just as well be half of an event cut by a broken connection).
        """
        try:
            tail = self._decoder.decode(b"", final=True) if self._decoder is not None else ""
        except UnicodeDecodeError as exc:
            raise SSEError(f"event stream ends inside a UTF-8 character: {exc.reason}") from None
        events = self.feed(tail) if tail else []
        if self._line:
            line, self._line = self._line, ""
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _check_size(self) -> None:
        if self._data_size + len(self._line) > self.max_event_size:
            raise SSEError(f"server-sent event larger than {self.max_event_size} characters")

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # a comment (keep-alive)
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._data_size, self._event = [], 0, ""
        if not data:
            return None
        return ServerSentEvent("\n".join(data), event or "message", self._last_id, self._retry)

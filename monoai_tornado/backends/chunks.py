"""Chat-completion chunks decoded at C speed, keeping only the fields the gateway reads.

An upstream streams an answer as one ``chat.completion.chunk`` object per token or so, most
of each object (``id``, ``object``, ``created``, ``model``, ``system_fingerprint``, ``logprobs``)
of no use to us. :func:`decode_chunks` decodes the data of every event of one read in one call
of msgspec (needs the ``fast`` extra; without it this module is not imported) into structs
holding the first choice's content, finish and stop reasons, and the usage; the decoder skips
the rest without building it. It answers None for anything off that path: an event that is
not one JSON object on one line, a field of an unexpected type, an ``error`` object, tool
calls, a ``message`` instead of a ``delta``. The caller then reads those events one by one the
general way (``openai._Assembler.on_object``), so the events and errors are the same either way
(``tests/test_chunk_decoding.py`` holds both ways to the same events over random streams).
"""
from __future__ import annotations

import re
from typing import Any

import msgspec

__all__ = ["Chunk", "Choice", "Delta", "decode_chunk_lines", "decode_chunks"]


class Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: Any = None


class Choice(msgspec.Struct):
    index: Any = 0
    delta: Delta | None = None
    message: Any = None
    finish_reason: str | None = None
    stop_reason: Any = None


class Chunk(msgspec.Struct):
    choices: list[Choice] | None = None
    usage: dict[str, Any] | None = None
    error: Any = None


_decode_lines = msgspec.json.Decoder(Chunk).decode_lines
#: A line of nothing but blanks (between two newlines, the text given one at each end): msgspec
#: skips it, so it would hide a line of two values from the count. (``^[ \t]*$`` in MULTILINE mode
#: tries every byte of the text, 12 us a read; a literal newline first lets the search skip ahead.)
_BLANK_LINE = re.compile(rb"\n[ \t]*\n")


def decode_chunks(datas: list[str]) -> list[Chunk] | None:
    """The chunks whose JSON texts are ``datas`` (one per event), or None when one is not on
    the common path (see the module's docstring)."""
    for data in datas:
        if "\n" in data:  # one line per chunk, so that a count tells one value per event
            return None
    return decode_chunk_lines("\n".join(datas).encode("utf-8", "surrogatepass"), len(datas))


def decode_chunk_lines(lines: bytes, count: int) -> list[Chunk] | None:
    """The chunks of ``count`` JSON texts, one per line of ``lines``, or None when one is not
    on the common path (see the module's docstring). Each line must hold one value: a value
    cut across two lines is a syntax error, two values on one line a count that differs (a
    blank line, which would make up for it, is refused first)."""
    if _BLANK_LINE.search(b"\n%b\n" % lines) is not None:
        return None
    try:
        chunks = _decode_lines(lines)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    if len(chunks) != count:  # two values in one event
        return None
    for chunk in chunks:
        if chunk.error:
            return None
        for choice in chunk.choices or ():
            if choice.message is not None or (choice.delta is not None and choice.delta.tool_calls is not None):
                return None
    return chunks

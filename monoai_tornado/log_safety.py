"""Log lines nobody can forge: control characters in logged values are written escaped.

A client chooses some of what is logged (its ``user_id``, the request path): a newline in it
would start a forged log line, a NUL or an escape sequence would reach the terminal or file.
:func:`escape_controls` writes them as ``\\n``, ``\\x00``, ``\\u2028``...; the access log
escapes its fields with it, and :class:`SafeFormatter` (the server's log format) every line.

>>> escape_controls("alice\\n200 GET /admin")
'alice\\\\n200 GET /admin'
"""
from __future__ import annotations

import logging
import re

#: C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (unchanged when it has none)."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) is not None else text


class SafeFormatter(logging.Formatter):
    """A formatter whose lines are one line each: the message's control characters escaped
    (a traceback, added after the message, keeps its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

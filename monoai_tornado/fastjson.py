"""JSON at C speed when msgspec is installed (the ``fast`` extra), else the standard library's.

:func:`loads` answers what :func:`json.loads` answers: msgspec's value when msgspec takes the text,
and for anything msgspec refuses (NaN and Infinity, numbers beyond a float, unpaired
surrogates, escaped or not, a byte order mark, UTF-16 bytes, deep nesting, invalid JSON) the
standard library's value or error. Both read RFC 8259 JSON to the same Python values (objects as dicts, the last of duplicate
keys kept, integers of any size as ints, floats correctly rounded), so only the speed changes.

:func:`dumps` and :func:`dumps_bytes` write compact JSON with non-ASCII text as it is, as
``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` does; what msgspec cannot write
(a key that is not a string or an integer, an object it does not know) goes to the standard
library. Two spellings differ and both read back to the same values: an exponent (``1e16``,
not ``1e+16``), and a NaN or an infinity, written ``null`` (``json.dumps`` writes ``NaN``,
which is not JSON).
"""
from __future__ import annotations

import json
from typing import Any, Callable

from .extras import optional

_msgspec = optional("msgspec")
_decode: Callable[[str | bytes], Any] | None = None
_encode: Callable[[Any], bytes] | None = None
_REFUSED: tuple[type[BaseException], ...] = ()
_UNWRITABLE: tuple[type[BaseException], ...] = ()
if _msgspec is not None:
    _decode = _msgspec.json.Decoder().decode
    _encode = _msgspec.json.Encoder().encode
    _REFUSED = (_msgspec.MsgspecError, ValueError, RecursionError)  # ValueError: text that is not UTF-8
    _UNWRITABLE = (_msgspec.MsgspecError, TypeError, ValueError, OverflowError, RecursionError)


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``, by msgspec when it can."""
    if _decode is not None:
        try:
            return _decode(text)
        except _REFUSED:
            pass
    return json.loads(text)


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON of ``value`` in UTF-8, non-ASCII text as it is (by msgspec when it can)."""
    if _encode is not None:
        try:
            return _encode(value)
        except _UNWRITABLE:
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dumps(value: Any) -> str:
    """:func:`dumps_bytes` as text."""
    if _encode is not None:
        try:
            return _encode(value).decode("utf-8")
        except _UNWRITABLE:
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

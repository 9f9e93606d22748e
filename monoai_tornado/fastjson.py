"""JSON decoding at C speed when orjson is installed (the ``fast`` extra), else the standard library's.

:func:`loads` answers what :func:`json.loads` answers: orjson's value when orjson takes the text,
and for anything orjson refuses (NaN, integers beyond 64 bits, unpaired surrogates, deep nesting,
UTF-16 bytes, invalid JSON) the standard library's value or error. Both read RFC 8259 JSON to the
same Python values (objects as dicts, the last of duplicate keys kept), so only the speed changes;
orjson reads an integer beyond 64 bits as a float, so text holding 19 digits in a row goes to the
standard library.
"""
from __future__ import annotations

import importlib
import json
import re
from types import ModuleType
from typing import Any



def _optional(name: str) -> ModuleType | None:
    """The module ``name`` when it is installed, else None (typed alike with or without it)."""
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - without the fast extra
        return None


_orjson = _optional("orjson")


#: 19 digits in a row: maybe an integer orjson would read as a float.
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``, by orjson when it can."""
    long_digits = _LONG_DIGITS_BYTES if isinstance(text, bytes) else _LONG_DIGITS
    if _orjson is not None and long_digits.search(text) is None:  # type: ignore[arg-type]
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(text)

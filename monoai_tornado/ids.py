"""Ids that name an answer but open nothing (``chatcmpl-...``, Anthropic's ``msg_...``).

Such an id must be unique, not secret: :class:`SerialIds` gives a random part drawn once per
process, then a counter, with no system call per id. A forked worker (``--processes``) draws
its own random part, so two workers never give the same id. An id that opens something (a
stored response's ``resp_...``) is drawn whole from the system's randomness instead.
"""
from __future__ import annotations

import itertools
import os
import weakref

__all__ = ["SerialIds"]

#: Every SerialIds alive, for a forked child to draw them new random parts.
_alive: "weakref.WeakSet[SerialIds]" = weakref.WeakSet()


class SerialIds:
    """``prefix`` + 16 random hex digits (per process) + a 16-digit hex counter: 32 hex digits
    after the prefix, as a UUID's.

    >>> ids = SerialIds("chatcmpl-")
    >>> first, second = ids(), ids()
    >>> first != second and first[:25] == second[:25] and len(first) == len("chatcmpl-") + 32
    True
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._renew()
        _alive.add(self)

    def _renew(self) -> None:
        self._head = self.prefix + os.urandom(8).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._head}{next(self._count):016x}"


def _renew_all() -> None:
    for ids in list(_alive):
        ids._renew()


os.register_at_fork(after_in_child=_renew_all)

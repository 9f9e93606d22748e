"""The usage ledger: one JSON object per finished run, what operators bill from.

``--usage-log PATH`` appends JSON lines to a file (:class:`FileLedger`); ``--usage-log redis``
appends to the capped Redis stream ``PREFIX + "usage"`` (:class:`RedisLedger`). Each line
carries the fields of API.md Part 3 (:data:`FIELDS`), whatever way the run ended.

A line is never half written: the file is opened ``O_APPEND`` and each line goes out in one
``write(2)`` of the whole line (so processes sharing the file never interleave inside a line,
and a process killed at any moment leaves whole lines only). Writes are not buffered by us: a
line is in the kernel when :meth:`FileLedger.record` returns; :meth:`aclose` (on drain) syncs
the file to disk. The Redis ledger sends its lines in one pipelined round trip per loop pass
and :meth:`RedisLedger.aclose` sends what is left before the process exits.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

from .. import fastjson

if TYPE_CHECKING:
    from ..usage import Usage

__all__ = ["FIELDS", "FileLedger", "RedisLedger", "UsageLedger", "ledger_entry", "timestamp"]

log = logging.getLogger("monoai_tornado.usage_log")

#: The fields of a ledger line, in order (API.md Part 3, "Usage ledger").
FIELDS = ("ts", "request_id", "user", "key_id", "model", "deployment", "route", "status", "finish_reason",
          "prompt_tokens", "cached_tokens", "completion_tokens", "cost_usd", "ttft_ms", "duration_ms", "attempts")

#: Entries a Redis stream keeps by default (``--usage-log-max``).
DEFAULT_MAX_ENTRIES = 1_000_000


#: The last whole second :func:`timestamp` wrote, and its text up to the seconds.
_second: tuple[int, str] = (-1, "")


def timestamp(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds: ``2026-12-06T16:20:00.123Z`` (the date and time of a
    second are formatted once, for every line of that second)."""
    global _second
    fraction, whole = math.modf(epoch)
    seconds, micro = divmod(int(whole) * 1_000_000 + round(fraction * 1e6), 1_000_000)  # as datetime rounds
    if seconds != _second[0]:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
        _second = (seconds, moment.strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{micro // 1000:03d}Z"


def ledger_entry(*, request_id: str, user: str, key_id: str | None, model: str, deployment: str | None, route: str,
                 status: str, finish_reason: str | None, usage: Usage, ttft: float | None, started: float,
                 attempts: int) -> dict[str, Any]:
    """A finished run's line: ``status`` is ``completed``, ``cancelled`` or ``failed``; ``ttft``
    seconds to the first text (None: none came); ``started`` the run's start (epoch seconds)."""
    ended = time.time()
    return {"ts": timestamp(ended), "request_id": request_id, "user": user, "key_id": key_id, "model": model,
            "deployment": deployment, "route": route, "status": status, "finish_reason": finish_reason,
            "prompt_tokens": usage.prompt_tokens, "cached_tokens": usage.cached_tokens,
            "completion_tokens": usage.completion_tokens, "cost_usd": usage.cost_usd,
            "ttft_ms": None if ttft is None else round(ttft * 1000, 3),
            "duration_ms": round((ended - started) * 1000, 3), "attempts": attempts}


def _line(entry: Mapping[str, Any]) -> bytes:
    if type(entry) is not dict or tuple(entry) != FIELDS:  # (ledger_entry's are already in order)
        entry = {name: entry.get(name) for name in FIELDS}
    return fastjson.dumps_bytes(entry) + b"\n"


@runtime_checkable
class UsageLedger(Protocol):
    """Where finished runs are written; ``record`` never raises nor waits."""

    def record(self, entry: Mapping[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


class FileLedger:
    """JSON lines appended to ``path`` (created if missing), one whole ``write(2)`` per line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._failing = False

    def record(self, entry: Mapping[str, Any]) -> None:
        if self._fd is None:
            log.warning("usage log %s is closed; run %s not written", self.path, entry.get("request_id"))
            return
        data = _line(entry)
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            if not self._failing:
                log.error("cannot write the usage log %s: %s", self.path, exc)
            self._failing = True
            return
        if written != len(data):  # a full disk: the line is cut; the next one starts on its own line
            log.error("usage log %s: wrote %d of %d bytes of a line", self.path, written, len(data))
            try:
                os.write(self._fd, b"\n")
            except OSError:
                pass
        self._failing = False

    async def aclose(self) -> None:
        """Sync the file to disk and close it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)


class RedisLedger:
    """Lines appended to the Redis stream ``prefix + "usage"`` (field ``json``: the line), capped
    at ``max_entries`` (exactly: ``XADD ... MAXLEN``).

    Lines recorded in one pass of the event loop go to Redis in one pipelined round trip. A
    Redis that does not answer loses those lines (one error logged per outage), never a run.
    """

    def __init__(self, url: str, prefix: str = "monoai:", *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 socket_timeout: float = 2.0) -> None:
        from ..ratelimit.redis_store import connect

        self.key = prefix + "usage"
        self.max_entries = max_entries
        self._redis = connect(url, socket_timeout=socket_timeout, max_connections=8)
        self._queued: list[bytes] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._failing = False

    @property
    def client(self) -> Any:
        return self._redis

    def record(self, entry: Mapping[str, Any]) -> None:
        self._queued.append(_line(entry).rstrip(b"\n"))
        if len(self._queued) == 1:
            task = asyncio.ensure_future(self._send())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self) -> None:
        await asyncio.sleep(0)  # every line of this loop pass joins the batch
        batch, self._queued = self._queued, []
        if not batch:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for line in batch:
                    pipe.xadd(self.key, {"json": line}, maxlen=self.max_entries, approximate=False)
                await pipe.execute()
        except Exception as exc:  # any Redis failure: the lines are lost, the runs are not
            if not self._failing:
                log.error("cannot append %d lines to the usage stream %s: %s", len(batch), self.key, exc)
            self._failing = True
            return
        self._failing = False

    async def aclose(self) -> None:
        """Send the lines still queued, then close the connection."""
        while self._sending or self._queued:
            if self._queued and not self._sending:
                await self._send()
            else:
                await asyncio.gather(*list(self._sending), return_exceptions=True)
        await self._redis.aclose()

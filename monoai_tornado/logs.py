"""Log lines: text for people, JSON for machines, control characters escaped in both.

``--log-format text`` (the default) writes ``TIME LEVEL LOGGER: MESSAGE`` with every control
character of the message escaped (:mod:`.log_safety`), so that a user id or a path cannot
forge or break a line. ``--log-format json`` writes one JSON object per line:
``time``, ``level``, ``logger``, ``message``, the ``request_id`` of the request being served,
``exception`` when there is one, and for access lines the fields of :func:`log_access`.
``--access-log off`` silences the access lines.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import logging
import sys
import time
from typing import Any

from .log_safety import SafeFormatter, escape_controls
from .request_trace import RequestTrace, current_trace
from .run_facts import facts_of

__all__ = ["TextFormatter", "JsonFormatter", "configure_logging", "ACCESS_LOGGER",
           "LOG_FORMAT", "log_access"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The logger of the access lines (one per HTTP request and per WebSocket prompt).
ACCESS_LOGGER = "monoai_tornado.access"


class TextFormatter(SafeFormatter):
    """The classic line, its message's control characters escaped (a traceback keeps its own lines);
    a line written while a request is served (a failed run, an upstream error) ends with its
    ``request_id=`` (access lines carry theirs as ``id=``)."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``logging.Formatter``'s time, the date and time of a second formatted once for every
        line of that second."""
        if datefmt is not None or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        return self._time(int(record.created), record.msecs)

    def _time(self, second: int, msecs: float) -> str:
        if second != self._second[0]:
            self._second = (second, time.strftime(self.default_time_format, self.converter(second)))
        return self.default_msec_format % (self._second[1], msecs)  # type: ignore[operator]

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        if record.name != ACCESS_LOGGER and (trace := current_trace.get()) is not None:
            line += f" request_id={trace.request_id}"  # a token or our hex: nothing to escape
        return line

    def access_line(self, created: float, levelname: str, message: str, fields: dict[str, Any] | None = None) -> str:
        """The line :meth:`format` writes for an access record, made without one (``message``: its
        control characters escaped already; ``fields``: unused)."""
        second = int(created)
        stamp = self._time(second, int((created - second) * 1000))  # a LogRecord's msecs
        return f"{stamp} {levelname} {ACCESS_LOGGER}: {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (ASCII only, so no character of it can split the line)."""

    def format(self, record: logging.LogRecord) -> str:
        line = _json_line(record.created, record.levelname, record.name, record.getMessage())
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        elif (trace := current_trace.get()) is not None:
            line["request_id"] = trace.request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)

    def access_line(self, created: float, levelname: str, message: str, fields: dict[str, Any] | None = None) -> str:
        """The line :meth:`format` writes for an access record (its ``fields``), made without one."""
        line = _json_line(created, levelname, ACCESS_LOGGER, message)
        line.update(fields or {})
        return json.dumps(line, default=str)


def _json_line(created: float, levelname: str, name: str, message: str) -> dict[str, Any]:
    return {"time": datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": levelname.lower(), "logger": name, "message": message}


class TurnBufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` whose lines of one turn of the event loop leave in one write: under
    load, one system call for the access lines of many requests instead of one each. Lines
    logged outside the loop's thread, or with no loop running, are written at once; the
    buffer is flushed at the end of the turn and by ``logging.shutdown`` (so at most the
    lines of the current turn are lost if the process is killed)."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        assert self.lock is not None
        #: ``logging.Handler``'s lock (reentrant), held as a context manager.
        self._lock = self.lock
        self._lines: list[str] = []
        self._scheduled = False
        #: :func:`_sole_handler`'s answers by level, kept until this turn's lines are flushed
        #: (a change to the logging configuration applies from the next turn).
        self.sole_by_level: dict[int, SoleHandler] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """Write a formatted line (with this turn's others, as :meth:`emit` does)."""
        with self._lock:  # (held already when logging calls emit: the lock is reentrant)
            self._lines.append(line + self.terminator)
        loop = asyncio._get_running_loop()  # this thread's loop, if one runs
        if loop is None:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            self._scheduled = False
            self.sole_by_level.clear()
            lines, self._lines = self._lines, []
            stream = self.stream
            if stream is None:
                return
            try:
                if lines:
                    stream.write("".join(lines))
                if hasattr(stream, "flush"):  # (StreamHandler.flush's work, under the lock held)
                    stream.flush()
            except Exception:  # a closed or broken stream: the lines are lost, the server goes on
                pass


#: The server's own handler and its formatter when an access line may be written to it directly
#: (:func:`_sole_handler`), else None.
SoleHandler = tuple[TurnBufferedHandler, TextFormatter | JsonFormatter] | None


def configure_logging(level: str = "info", fmt: str = "text", access_log: bool = True) -> None:
    """Lines on stderr at ``level`` in ``fmt`` (``text`` or ``json``), unless logging is configured
    already; ``access_log`` False silences the access lines."""
    global _installed
    root = logging.getLogger()
    if not root.handlers:
        handler = _installed = TurnBufferedHandler()
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        root.addHandler(handler)
        root.setLevel(level.upper())
        # Our formats name no thread, process nor caller: a record need not look them up (the
        # logging HOWTO's "Optimization"; ~2 us of every access line).
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        logging._srcfile = None
        if sys.version_info >= (3, 12):
            logging.logAsyncioTasks = False
    if not access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.CRITICAL + 10)


_access = logging.getLogger(ACCESS_LOGGER)
#: The handler :func:`configure_logging` installed, if it did (see :func:`_sole_handler`).
_installed: TurnBufferedHandler | None = None
_LEVEL_NAMES = {logging.INFO: "INFO", logging.WARNING: "WARNING", logging.ERROR: "ERROR"}


def _sole_handler(level: int) -> SoleHandler:
    """The handler an access line of ``level`` reaches and its formatter, when it is the only
    one, with none of the user's filters or formatters in the way: the handler
    :func:`configure_logging` installed, with its formatter. The line may then skip the
    logging machinery (a record, its handling, ~40 % of an access line's cost) and be written
    to it directly, the same line. None whenever anything else is configured, so that
    whatever a user adds sees every line (from the next turn of the event loop: the answer
    is kept for the lines of one turn)."""
    handler = _installed
    if handler is None:
        return None
    known = handler.sole_by_level
    if level in known:
        return known[level]
    sole = known[level] = _find_sole_handler(handler, level)
    return sole


def _find_sole_handler(handler: TurnBufferedHandler, level: int) -> SoleHandler:
    if level < handler.level or handler.filters or _access.filters:
        return None
    formatter = handler.formatter
    if type(formatter) is not TextFormatter and type(formatter) is not JsonFormatter:
        return None
    logger: logging.Logger | None = _access
    while logger is not None and logger is not logging.root:
        if logger.handlers or not logger.propagate:
            return None
        logger = logger.parent
    return (handler, formatter) if logging.root.handlers == [handler] else None


def log_access(level: int, *, method: str, path: str, route: str, status: int | str, ticket: Any,
               trace: RequestTrace | None, remote_ip: str | None, seconds: float) -> None:
    """The access line of one HTTP request or WebSocket prompt (``ticket``: None when never admitted)."""
    if not _access.isEnabledFor(level):
        return
    request_id = "-" if trace is None else trace.request_id
    identity = ticket.identity if ticket is not None else getattr(trace, "identity", None)
    user = (None if identity is None else identity.key) or f"ip:{remote_ip}"
    api_key = None if identity is None else identity.api_key
    usage = None if ticket is None else ticket.usage
    tokens = None if usage is None else usage.total_tokens
    # a key by its id, never the key; control characters escaped once, over the whole message
    # (ids and numbers have none): the user's, the method's, the path's
    message = escape_controls(
        f"{status} {method} {path} user={user}{'' if api_key is None else f' key={api_key.id}'}"
        f" tokens={'-' if tokens is None else tokens} id={request_id} {1000.0 * seconds:.2f}ms")
    sole = _sole_handler(level)
    fields = None
    if sole is None or type(sole[1]) is not TextFormatter:  # a JSON line's fields (a user's formatter may read them)
        facts = facts_of(ticket, trace)
        ttft = facts.ttft_seconds
        fields = {"request_id": request_id, "method": method, "path": path, "route": route, "status": status,
                  "user": user, "key_id": facts.key_id, "model": facts.model,
                  "deployment": facts.deployment, "prompt_tokens": facts.prompt_tokens,
                  "completion_tokens": facts.completion_tokens, "tokens": facts.total_tokens,
                  "cost_usd": facts.cost_usd, "duration_ms": round(1000.0 * seconds, 3),
                  "ttft_ms": None if ttft is None else round(1000.0 * ttft, 3)}
    if sole is not None:
        handler, formatter = sole
        try:
            line = formatter.access_line(time.time(), _LEVEL_NAMES.get(level) or logging.getLevelName(level),
                                         message, fields)
        except Exception:
            pass  # the record's way, below, tells it as logging does
        else:
            handler.write_line(line)
            return
    _access.log(level, message, extra={"access": fields})  # (no arguments: a "%" of the path stays as it is)

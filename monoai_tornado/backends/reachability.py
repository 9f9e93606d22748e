"""Can the upstream be reached, and if not, why: the cause named as a user can act on it.

:func:`describe_failure` turns what a connection attempt raised (Tornado wraps the socket's
error in ``StreamClosedError("Stream is closed")``) into "connection refused", "DNS lookup
failed", "TLS handshake failed" or "timed out". :class:`Reachability` opens a TCP connection to
the upstream's host and port (at most once every ``ttl`` seconds, whatever asks), for
``/health``.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.parse

from tornado.iostream import StreamClosedError
from tornado.simple_httpclient import HTTPTimeoutError

#: Seconds a reachability answer is reused (so /health traffic never floods the upstream).
TTL = 2.0
#: Seconds a probe's connection may take.
PROBE_TIMEOUT = 2.0


def describe_failure(exc: BaseException) -> str:
    """The cause of a failed connection, in words: refused, DNS, TLS, timeout, or the OS's own."""
    real = getattr(exc, "real_error", None)
    if isinstance(exc, StreamClosedError) and isinstance(real, BaseException):
        exc = real
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens at that address and port)"
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({getattr(exc, 'reason', None) or exc})"
    if isinstance(exc, (TimeoutError, HTTPTimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the upstream"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Reachability:
    """Whether a TCP connection to ``url``'s host and port opens; the answer kept ``ttl`` seconds."""

    def __init__(self, url: str, *, ttl: float = TTL, timeout: float = PROBE_TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ttl, self.timeout = ttl, timeout
        self._checked_at = -float("inf")
        self._answer: str | None = None
        self._probe: asyncio.Future[str | None] | None = None

    async def problem(self) -> str | None:
        """None when the upstream accepts a connection, else why it does not."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked_at < self.ttl:
            return self._answer
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self._probe)

    async def _connect(self) -> str | None:
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
            writer.close()
            answer = None
        except (OSError, TimeoutError) as exc:
            answer = describe_failure(exc)
        self._answer, self._checked_at = answer, asyncio.get_running_loop().time()
        return answer

"""Running an :class:`~monoai_tornado.app.Application`: listen, fork workers, drain on SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import tornado.netutil

from .collector import tune_for_serving
from .logs import LOG_FORMAT as LOG_FORMAT, configure_logging as configure_logging  # callers import them from here
from .loops import loop_factory
from .usage import release_pickling_copies
from .workers import fork_workers

log = logging.getLogger("monoai_tornado.server")


async def drain(app: Any, server: Any, timeout: float) -> None:
    """Stop ``server`` and end ``app``'s life (:meth:`Application.aclose`)."""
    await app.aclose(timeout, server=server)


async def serve_forever(app: Any, sockets: list[Any], drain_timeout: float) -> None:
    """Serve on already bound sockets until SIGTERM/SIGINT, then drain and return."""
    server = app.http_server()
    server.add_sockets(sockets)
    limiter = app.rate_limiter
    watch = asyncio.ensure_future(limiter.watch()) if limiter is not None else None
    gateway = getattr(app, "gateway", None)
    if gateway is not None:
        gateway.start()  # reload on SIGHUP and file changes, probes
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if watch is not None:
        watch.cancel()
    log.info("shutting down: draining for up to %.0f s", drain_timeout)
    await drain(app, server, drain_timeout)
    log.info("stopped")


def run(app_factory: Any, host: str, port: int, *, processes: int = 1, drain_timeout: float = 30.0,
        banner: bool = True, event_loop: str = "auto") -> None:
    """Bind ``host:port``, fork ``processes`` workers if asked, and serve each until stopped.

    ``app_factory()`` builds the Application in each worker (after the fork), so that every
    process owns its own IOLoop resources (Redis connections, HTTP clients). ``event_loop``:
    ``auto`` (uvloop when installed), ``uvloop`` or ``asyncio`` (:mod:`monoai_tornado.loops`).
    ``banner``: print the endpoints on stdout (the start's log lines are written either way).
    """
    loop_name, factory = loop_factory(event_loop)
    sockets = tornado.netutil.bind_sockets(port, host)
    actual_port = sockets[0].getsockname()[1]
    worker = fork_workers(processes) if processes > 1 else 0
    app = app_factory()
    release_pickling_copies()  # before the collector's freeze: 15 MiB of tiktoken's ranks go
    tune_for_serving()
    if worker == 0:
        if banner:  # the endpoint list on stdout, for people (not with --log-format json)
            base = f"http://{host if ':' not in host else '[' + host + ']'}:{actual_port}"
            print(f"monoai_tornado: {app.name} on {base}"
                  + (f" ({processes} processes)" if processes > 1 else ""), flush=True)
            for line in app.endpoint_lines(base):
                print(f"  {line}", flush=True)
        app.log_start(host, actual_port)
        log.info("event loop: %s", loop_name)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_forever(app, sockets, drain_timeout))

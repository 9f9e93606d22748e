"""Forking worker processes that share one listening socket, with a supervisor that passes
SIGTERM/SIGINT on to them.

Tornado's ``fork_processes`` leaves the workers running when the parent is told to stop; this
supervisor forwards the signal, waits for every worker to drain, restarts a worker that dies
unexpectedly (a bounded number of times), and exits 0 after a clean shutdown.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time

log = logging.getLogger("monoai_tornado.workers")

MAX_RESTARTS = 100


def fork_workers(count: int) -> int:
    """Fork ``count`` workers; returns the worker's index (0..count-1) in each worker.

    The parent never returns: it supervises the workers and exits when they have all stopped.
    """
    children: dict[int, int] = {}
    stopping = False

    def start(index: int) -> int | None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop handles it
            return index
        children[pid] = index
        return None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reload(signum: int, _frame: object) -> None:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, reload)  # the workers reload their configuration
    for index in range(count):
        if start(index) is not None:
            return index
    restarts = 0
    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, -1)
        if index < 0:  # not one of ours
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping or code == 0:
            continue
        log.warning("worker %d (pid %d) exited with %d", index, pid, code)
        restarts += 1
        if restarts > MAX_RESTARTS:
            failed = True
            forward(signal.SIGTERM, None)
            continue
        time.sleep(0.1)
        if start(index) is not None:
            return index
    sys.exit(1 if failed else 0)

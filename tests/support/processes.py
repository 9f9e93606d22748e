"""Running ``python -m monoai_tornado`` as a real process on a free port, as a user would."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import json
import time
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, body: Any = None, *, key: str | None = None, method: str | None = None) -> tuple[int, Any]:
    """A blocking JSON request: POST ``body`` (GET without one), ``key`` as its bearer token;
    (status, JSON answer), whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST ``body`` as JSON from a blocking client: (status, JSON answer), whatever the status."""
    return call(url, body)


def wait_for(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def start_server(*args: str, capture: bool = False, env: dict[str, str] | None = None,
                 ready: str = "/health") -> tuple[str, subprocess.Popen]:
    """Start the server with ``args`` and wait until ``ready`` answers 200; returns (base URL, process)."""
    port = free_port()
    output: Any = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "monoai_tornado", "--port", str(port), *args],
                            stdout=output, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + ready)
    except AssertionError:
        proc.kill()
        proc.communicate()
        raise
    return base, proc


def stop_server(proc: subprocess.Popen, timeout: float = 15) -> str:
    """SIGTERM, then kill if it does not exit in time; returns what it printed (if captured)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output or ""


class Servers:
    """Server processes of one test (or module): ``servers(*args)`` starts one with the ``common``
    arguments first and returns its base URL; ``stop_all()`` stops them all."""

    def __init__(self, *common: str, capture: bool = False, env: dict[str, str] | None = None) -> None:
        self.common, self.capture, self.env = common, capture, env
        self.procs: list[subprocess.Popen] = []

    def __call__(self, *args: str) -> str:
        base, proc = start_server(*self.common, *args, capture=self.capture, env=self.env)
        self.procs.append(proc)
        return base

    def stop_all(self) -> str:
        """Stop every process still running; what they printed (if captured), one after another."""
        outputs = []
        while self.procs:
            outputs.append(stop_server(self.procs.pop()))
        return "\n".join(outputs)

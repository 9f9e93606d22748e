"""Test upstreams as separate processes: :class:`~tests.support.fake_openai.FakeOpenAI` in a process of
its own, steered through a small control port, so that a test can kill one with SIGKILL.

    upstream = UpstreamProcess.start()             # http://127.0.0.1:PORT/v1
    upstream.configure(status=429, error_headers={"Retry-After": "2"})
    upstream.count()                               # chat completions received so far
    upstream.kill()

Run as ``python -m tests.support.upstreams``: prints ``PORT CONTROL_PORT`` once serving.
"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class UpstreamProcess:
    """One fake OpenAI-compatible upstream in its own process."""

    def __init__(self, proc: subprocess.Popen[str], port: int, control: int) -> None:
        self.proc, self.port, self.control = proc, port, control

    @classmethod
    def start(cls, **knobs: Any) -> "UpstreamProcess":
        proc = subprocess.Popen([sys.executable, "-m", "tests.support.upstreams", json.dumps(knobs)],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError("the upstream process did not start")
        port, control = (int(part) for part in line.split())
        return cls(proc, port, control)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _control(self, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}{path}", data=data, timeout=10) as answer:
            return json.loads(answer.read())

    def configure(self, **knobs: Any) -> None:
        """How the next requests are answered (the knobs of :class:`~tests.support.fake_openai.Reply`)."""
        self._control("/configure", knobs)

    def count(self) -> int:
        """Chat completion requests received so far."""
        return int(self._control("/stats")["chat"])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def _serve(knobs: dict[str, Any]) -> None:
    import tornado.testing
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    from tests.support.fake_openai import FakeOpenAI

    upstream = await FakeOpenAI(**knobs).start()

    class Configure(RequestHandler):
        def post(self) -> None:
            upstream.configure(**json.loads(self.request.body))
            self.write({"ok": True})

    class Stats(RequestHandler):
        def get(self) -> None:
            # Only the requests so far are kept: an upstream under long load forgets the rest.
            chat = sum(1 for record in upstream.requests if record.path.endswith("/chat/completions"))
            self.write({"chat": chat + forgotten[0]})

    forgotten = [0]
    sock, control = tornado.testing.bind_unused_port()
    server = HTTPServer(Application([(r"/configure", Configure), (r"/stats", Stats)], log_function=lambda h: None))
    server.add_sockets([sock])
    print(upstream.port, control, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            done = [record for record in upstream.requests if record.done]
            if len(done) > 1000:  # keep memory bounded under long load
                forgotten[0] += sum(1 for record in done if record.path.endswith("/chat/completions"))
                upstream.requests = [record for record in upstream.requests if not record.done]
    await upstream.stop()


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))

"""What OpenTelemetry costs per prompt: CPU of the request path (admit, run, end of trace) with
tracing off, on with the sampler dropping everything, on at 10 % and at 100 % sampling.

The spans go by OTLP/HTTP to a sink in another process (it answers 200 and keeps nothing), so
the exporter's batching, encoding and sending are paid as in production. CPU time (not wall
time) is measured, for the event loop's thread and for the whole process (the exporter's
thread included), so the figures hold on a busy machine too. No HTTP: the request path alone,
the part tracing adds to; compare with ``bench/gateway.py``'s CPU ms per request (lines
``ours-v1``, ``ours+otel``, ``ours+otel10``) for a whole request.

    .venv/bin/python bench/otel_cost.py            # needs the otel extra
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Any

SINK = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import sys
class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""

MODES = {"off": None, "sampler-off": ("always_off", ""), "10%": ("traceidratio", "0.1"),
         "100%": ("traceidratio", "1.0")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(mode: str) -> Any:
    from monoai_tornado import Application, DemoBackend

    sampler = MODES[mode]
    if sampler is not None:  # the provider reads the sampler from the environment when it is made
        os.environ["OTEL_TRACES_SAMPLER"], os.environ["OTEL_TRACES_SAMPLER_ARG"] = sampler
    return Application("bench", model=DemoBackend(delay=0, chunks=16, chunk_chars=4), otel=sampler is not None)


async def one(app: Any) -> None:
    from monoai_tornado.calls import SilentEvents
    from monoai_tornado.prompt_request import PromptRequest
    from monoai_tornado.request_trace import RequestTrace

    headers: dict[str, str] = {}
    trace = RequestTrace.from_headers(headers)
    ticket = await app.pipeline.admit(PromptRequest("hi"), "127.0.0.1", headers, trace=trace)
    await app.pipeline.run(ticket, app.context.model, SilentEvents())
    app.pipeline.end_trace(trace, 200, ticket)


async def measure(rounds: int, prompts: int) -> dict[str, tuple[float, float]]:
    apps = {mode: build(mode) for mode in MODES}
    samples: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    for _ in range(rounds):  # interleaved, so that the machine's load falls on every mode alike
        for mode, app in apps.items():
            for _ in range(prompts // 10):
                await one(app)
            thread0, process0 = time.thread_time(), time.process_time()
            for _ in range(prompts):
                await one(app)
            samples[mode].append(((time.thread_time() - thread0) / prompts * 1e6,
                                  (time.process_time() - process0) / prompts * 1e6))
    for app in apps.values():
        if app.pipeline.tracing is not None:
            app.pipeline.tracing.shutdown()
    medians = {}
    for mode, values in samples.items():
        loop_thread = sorted(v[0] for v in values)
        process = sorted(v[1] for v in values)
        medians[mode] = (loop_thread[len(values) // 2], process[len(values) // 2])
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--prompts", type=int, default=3000, help="prompts per mode and round")
    args = parser.parse_args()
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"http://127.0.0.1:{port}/v1/traces"
    logging.disable(logging.CRITICAL)
    try:
        time.sleep(0.5)
        medians = asyncio.run(measure(args.rounds, args.prompts))
    finally:
        sink.terminate()
        sink.wait(5)
    base = medians["off"][1]
    print(f"CPU per prompt on the request path (medians of {args.rounds} rounds x {args.prompts} prompts)")
    print(f"{'tracing':<12} {'loop thread us':>14} {'process us':>10} {'added us':>9}")
    for mode, (loop_thread, process) in medians.items():
        print(f"{mode:<12} {loop_thread:>14.1f} {process:>10.1f} {process - base:>+9.1f}")


if __name__ == "__main__":
    main()

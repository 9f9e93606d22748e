"""Where the time of one ``/v1/chat/completions`` request goes: py-spy over a wrk load, by stage.

    python bench/profile_v1.py [--seconds 8] [--rate 400] [--connections 16] [--save DIR] [--try-dir DIR]
                               [--server-args "..."] [--server ours+features] [--blocking]

The mock upstream of ``gateway.py`` and our server (the ``ours`` line: OpenAI backend, memory
limiter that never trips) are started, ours pinned to ``--server-cpus``, wrk and the upstream to
``--load-cpus``. For a non-streamed and then a streamed request, wrk loads the server while
``py-spy record --gil --nonblocking`` samples it (``--blocking``: paused for each sample, which
on this machine inflates the lines of system calls); the server's CPU per request is read from
``/proc`` over the same window. Each sample is given to the stage of the innermost frame that names one (leaf
first: JSON decoding called from the SSE parser counts as SSE parsing, a socket write called
from Tornado's HTTP/1 server as Tornado's server side), and the table shows each stage's share
of the samples and that share of the CPU per request in microseconds. ``--save`` keeps py-spy's
raw stacks (flamegraph input).

Only 127.0.0.1 is contacted; the load and the sampling are bounded in time; every process is
stopped whatever happens.
"""
from __future__ import annotations

import argparse
import collections
import os
import shlex
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import HOST, PYTHON, print_table  # noqa: E402
from gateway import (  # noqa: E402
    GatewayServer,
    Setup,
    fast_upstream,
    ours_server,
    pinned,
    run_wrk,
    shape_for,
    tree_cpu,
)

PY_SPY = os.path.join(os.path.dirname(PYTHON), "py-spy")

#: (stage, substrings of a frame "function (file:line)"): the first stage, leaf first, whose
#: substring a frame holds. Order matters only within one frame.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (access log)", ("/logging/", "log_request", "access_log")),
    ("metrics", ("monoai_tornado/metrics.py",)),
    ("token counting", ("tiktoken", "monoai_tornado/usage.py", "prompt_count.py")),
    ("admission (limiter, headers)", ("monoai_tornado/ratelimit/",)),
    ("identity", ("monoai_tornado/identity.py", "monoai_tornado/keys/")),
    ("money, routing, usage log", ("monoai_tornado/money/", "monoai_tornado/routing/", "monoai_tornado/run_facts.py")),
    ("parsing, validation", ("chat_request.py", "prompt_request.py", "conversation.py", "monoai_tornado/wire.py")),
    ("SSE parsing (upstream events)", ("backends/sse.py",)),
    ("upstream request and answer", ("backends/http1.py", "backends/upstream.py", "backends/upstream_conn.py", "backends/openai.py",
                                     "backends/upstream_errors.py")),
    ("pipeline (run, meter, calls)", ("monoai_tornado/pipeline.py", "monoai_tornado/calls.py",
                                      "monoai_tornado/lifecycle.py", "monoai_tornado/deadlines.py",
                                      "backends/base.py")),
    ("re-rendering (our events, JSON)", ("handlers/openai_front.py", "monoai_tornado/rendering.py")),
    ("our handler (set-up, headers, writes)", ("monoai_tornado/handlers/", "monoai_tornado/tornado_internals.py",
                                               "monoai_tornado/errors.py")),
    ("our HTTP/1 server side (http1server, httptools)", ("monoai_tornado/http1server/", "httptools")),
    ("Tornado server side (HTTP/1, RequestHandler)", ("tornado/web.py", "tornado/http1connection.py",
                                                      "tornado/httpserver.py", "tornado/routing.py",
                                                      "tornado/tcpserver.py",
                                                      "tornado/netutil.py")),
    ("Tornado IOStream (socket reads/writes)", ("tornado/iostream.py",)),
    ("event loop, futures, tasks", ("asyncio/", "uvloop", "tornado/platform/", "tornado/gen.py",
                                    "tornado/concurrent.py", "tornado/ioloop.py")),
)
OTHER = "other"


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return OTHER


def classify(raw: str) -> collections.Counter[str]:
    """Samples by stage, from py-spy's raw output ("frame;frame;... count" per line)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stage_of(stack.split(";"))] += int(n)
    return counts


def profile(srv: GatewayServer, stream: bool, args: argparse.Namespace) -> tuple[collections.Counter[str], float, str]:
    """(samples by stage, server CPU ms per request, raw stacks) of one load."""
    shape = shape_for(stream, args.server)
    run_wrk(f"http://{HOST}:{srv.port}{shape.path}", shape.body, shape.headers, 1, args.connections,
            prefix=pinned(args.load_cpus))  # warm-up
    result: dict[str, float] = {}
    cpu0 = tree_cpu(srv.pid)

    def load() -> None:
        result.update(run_wrk(f"http://{HOST}:{srv.port}{shape.path}", shape.body, shape.headers, args.seconds + 1,
                              args.connections, prefix=pinned(args.load_cpus)))

    loader = threading.Thread(target=load)
    loader.start()
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
        spy = subprocess.run([PY_SPY, "record", "--pid", str(srv.pid), "--duration", str(int(args.seconds)),
                              "--rate", str(args.rate), "--gil", "--format", "raw", "--full-filenames",
                              *(() if args.blocking else ("--nonblocking",)),
                              "-o", out.name], capture_output=True, text=True, timeout=args.seconds + 60, check=False)
        raw = out.read()
    loader.join(args.seconds + 90)
    cpu = tree_cpu(srv.pid) - cpu0
    if spy.returncode != 0 or not raw:
        raise SystemExit(f"py-spy failed: {spy.stderr[-1500:]}")
    requests = result.get("requests", 0.0)
    return classify(raw), (1000 * cpu / requests if requests else float("nan")), raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of sampling per load")
    parser.add_argument("--rate", type=int, default=400, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument("--try-dir", help="profile the copy of the package in this directory instead")
    parser.add_argument("--server-args", default="", help="more arguments for our server")
    parser.add_argument("--server", help="a server of gateway.py instead of ours (or try): ours+features has "
                                            "every feature on")
    parser.add_argument("--save", help="directory for py-spy's raw stacks (plain.txt, stream.txt)")
    parser.add_argument("--blocking", action="store_true",
                        help="let py-spy pause the server for each sample (its default; on this machine the pauses "
                             "land at system calls and inflate their lines: see bench/README.md)")
    args = parser.parse_args()
    if not os.path.exists(PY_SPY):
        raise SystemExit(f"{PY_SPY} not found: .venv/bin/pip install py-spy")
    upstream = fast_upstream(args.load_cpus)
    if not args.server:
        args.server = "try" if args.try_dir else "ours"
        ours_server(args.server, *shlex.split(args.server_args), tries=bool(args.try_dir))
    server = args.server
    tables = {}
    with upstream:
        setup = Setup(upstream.port, args.server_cpus, args.load_cpus,
                      try_dir=os.path.abspath(args.try_dir) if args.try_dir else None)
        variant = setup.variant(server)
        with GatewayServer(variant, shape_for(True, server), None, 60.0) as srv:
            for label, stream in (("plain", False), ("stream", True)):
                counts, cpu_ms, raw = profile(srv, stream, args)
                tables[label] = (counts, cpu_ms)
                if args.save:
                    os.makedirs(args.save, exist_ok=True)
                    with open(os.path.join(args.save, f"{label}.txt"), "w") as f:
                        f.write(raw)
    stages = [s for s, _ in STAGES] + [OTHER]
    header = ["stage", "non-streamed %", "us/req", "streamed %", "us/req"]
    rows = []
    for stage in stages:
        row = [stage]
        for label in ("plain", "stream"):
            counts, cpu_ms = tables[label]
            share = counts[stage] / max(1, sum(counts.values()))
            row += [f"{100 * share:.1f}", f"{1000 * cpu_ms * share:.0f}"]
        rows.append(row)
    row = ["total (server CPU per request)"]
    for label in ("plain", "stream"):
        counts, cpu_ms = tables[label]
        row += [f"100 ({sum(counts.values())} samples)", f"{1000 * cpu_ms:.0f}"]
    rows.append(row)
    print_table(f"Where a /v1/chat/completions request's CPU goes ({server}; py-spy --gil, {args.seconds:g} s of "
                f"wrk -c{args.connections} per column; innermost stage of each sample)", header, rows)


if __name__ == "__main__":
    main()

"""Gateway overhead: what each gateway adds between a client and a fast model server, in one run.

    python bench/gateway.py [--rounds 3] [--quick] [--lines direct,floor-aiohttp,ours-v1,...]
                            [--duration 6] [--paced-rate 10] [--paced-duration 6] [--json FILE]

A fast OpenAI-compatible upstream (``bench/fast_upstream.py``: 16 chunks of 4 characters,
``usage`` in the last chunk) answers every request. In front of it, alternating in rounds
(every line once per round; each server is started once, before the first round, and idles while
the others are measured):

- ``direct``: the upstream itself, the zero-overhead line;
- ``floor-proxy``: a bare Tornado proxy (``bench/floor_proxy.py``) forwarding with Tornado's
  HTTP client (a connection per request) and relaying the body; ``floor-proxy+ka`` the same
  over kept-alive upstream connections;
- ``floor-aiohttp``: an aiohttp relay on uvloop with one pooled ``ClientSession``
  (``bench/floor_aiohttp.py``, ``pip install -e '.[bench]'``): what Python allows;
- ``ours-v1`` (``ours`` is accepted): ``python -m monoai_tornado --backend openai`` with a memory
  limiter that never trips, through ``/v1/chat/completions``; ``ours /model`` the same server through ``/model``
  and ``/model/stream`` (SSE); ``ours+asyncio`` forces the plain asyncio loop (``ours`` uses
  uvloop when it is installed);
- ``litellm``: the LiteLLM proxy (PyPI ``litellm[proxy]``, pinned below, one worker, config
  ``bench/litellm_config.yaml``, an rpm/tpm limit that never trips), installed on first use
  into ``bench/.venv-litellm``.

Each server runs pinned to ``--server-cpus`` (taskset); the upstream and the load generators
run on ``--load-cpus``. Per line and round: requests/s with 64 connections, non-streamed and
streamed (wrk, keep-alive), the server's CPU per request and its RSS (the whole process tree),
errors; then, once every line's throughput is known, the latency of streamed requests at a
paced open-loop load that every server carries (``--paced-rate`` per second, lowered to half
the slowest server's streamed req/s of the round; at least 20 requests), measured from when
each request was due, so a server that falls behind is not excused by a waiting client, and
what it adds over ``direct`` in the same round. After each load the script waits (at most
30 s, 5 s with ``--quick``) until the server has worked off what the load left queued.
``--quick`` runs 2 short rounds of direct, floor-proxy+ka, floor-aiohttp and ours-v1. Every figure is
also shown as a ratio to ``floor-aiohttp``, ``floor-proxy+ka`` and ``litellm`` of the same round
(median over rounds), and ``--json``'s ``summary`` holds by line ``stream_rps``, ``json_rps``, CPU
per request, added latency, RSS and the ratios ``x_floor_aiohttp`` and ``x_floor_proxy_ka``.
A line is one call (``add_line``, ``ours_server``: see "the lines" below).

Only 127.0.0.1 is ever contacted; every load is bounded in time and count; every process is
stopped (SIGTERM, then SIGKILL) whatever happens.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    BENCH_DIR,
    HOST,
    NEVER_TRIPPING,
    OURS_DIR,
    PYTHON,
    Server,
    Variant,
    cpu_seconds,
    dump_json,
    fmt,
    http_post,
    median,
    percentile,
    post_request,
    print_table,
    rss_bytes,
    run_wrk,
)

LITELLM_VERSION = "1.108.7"
LITELLM_VENV = os.path.join(BENCH_DIR, ".venv-litellm")
LITELLM_CONFIG = os.path.join(BENCH_DIR, "litellm_config.yaml")
MODEL = "bench-model"
PROMPT = "Say something about benchmarks, please."
CHUNKS, CHUNK_CHARS = 16, 4
DEFAULT_LINES = ("direct,floor-proxy,floor-proxy+ka,floor-aiohttp,ours-v1,ours-v1+as-client,ours-v1+features,"
                 "ours-routed,ours /model,litellm")
#: --quick measures the lines of the JSON summary only.
QUICK_LINES = "direct,floor-proxy+ka,floor-aiohttp,ours-v1,ours-v1+as-client,ours-v1+features"


# -- what is sent ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """One request: path, body, extra headers, and bytes every good answer contains."""

    path: str
    body: str
    headers: tuple[tuple[str, str], ...]
    marker: bytes


def openai_shape(stream: bool) -> Shape:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": stream},
                      separators=(",", ":"))
    return Shape("/v1/chat/completions", body, (("Content-Type", "application/json"),),
                 b"[DONE]" if stream else b'"choices"')


def model_shape(stream: bool) -> Shape:
    body = json.dumps({"prompt": PROMPT})
    if stream:
        return Shape("/model/stream", body, (("Content-Type", "application/json"), ("Accept", "text/event-stream")),
                     b"event: complete")
    return Shape("/model", body, (("Content-Type", "application/json"),), b'"response"')


@dataclass(frozen=True)
class Line:
    """A row of the tables: a server and the route it is measured through."""

    name: str
    server: str
    plain: Shape
    stream: Shape


# -- the servers ----------------------------------------------------------------------------

def pinned(cpus: str, *argv: str) -> tuple[str, ...]:
    return ("taskset", "-c", cpus, *argv) if cpus else argv


def ensure_litellm() -> str:
    """The ``litellm`` command of bench/.venv-litellm, installed there on first use."""
    exe = os.path.join(LITELLM_VENV, "bin", "litellm")
    if os.path.exists(exe):
        return exe
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (first use; a few minutes)",
          file=sys.stderr, flush=True)
    if not os.path.exists(os.path.join(LITELLM_VENV, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", LITELLM_VENV], check=True, timeout=300)
    subprocess.run([os.path.join(LITELLM_VENV, "bin", "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
                   check=True, timeout=1800)
    return exe


@dataclass
class Setup:
    upstream_port: int
    server_cpus: str
    load_cpus: str
    #: Another copy of the package, measured as the "try" servers (A/B of a change).
    try_dir: str | None = None
    env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def upstream(self) -> str:
        return f"http://{HOST}:{self.upstream_port}"

    def variant(self, server: str) -> Variant:
        spec = SERVERS.get(server)
        if spec is None:
            raise SystemExit(f"unknown server {server!r}")
        if spec.env:
            self.env[server] = {k: v.format(upstream=self.upstream) for k, v in spec.env.items()}
        argv = pinned(self.server_cpus, *spec.argv(self))
        return Variant(server, argv, cwd=spec.cwd(self), headers=spec.headers() if spec.headers else ())


# -- the lines: a registry; a new line is one call ----------------------------------------------
#
#   ours_server("ours+otel", "--otel")                        # our server with other options
#   add_line("ours+otel", "ours+otel")                        # ... measured through /v1/chat/completions
#   add_line("ours-messages", "ours", anthropic_plain, anthropic_stream)   # another route of a server
#
# A server's arguments may name {upstream} (the mock upstream's base URL) and {port}; a callable
# of the Setup may build them (e.g. write a config file naming setup.upstream).

@dataclass(frozen=True)
class ServerSpec:
    """How to start a server: its command line (``{port}``, ``{upstream}`` filled in), cwd, env."""

    args: tuple[str, ...] | Callable[[Setup], Sequence[str]]
    #: Ours: the package is taken from this checkout (or --try-dir for "try" servers).
    ours: bool = False
    tries: bool = False
    env: dict[str, str] = field(default_factory=dict)
    #: Headers every request to it carries, read once its command line is built (an API key).
    headers: Callable[[], tuple[tuple[str, str], ...]] | None = None

    def argv(self, setup: Setup) -> tuple[str, ...]:
        args = self.args(setup) if callable(self.args) else self.args
        return tuple(a.replace("{upstream}", setup.upstream) for a in args)

    def cwd(self, setup: Setup) -> str:
        if not self.ours:
            return BENCH_DIR
        if self.tries:
            if setup.try_dir is None:
                raise SystemExit("the try lines need --try-dir")
            return setup.try_dir
        return OURS_DIR


@dataclass(frozen=True)
class LineSpec:
    server: str
    plain: Callable[[], Shape]
    stream: Callable[[], Shape]


SERVERS: dict[str, ServerSpec] = {}
LINES: dict[str, LineSpec] = {}
#: Older names of lines, still accepted by --lines.
ALIASES = {"ours": "ours-v1", "try": "try-v1"}


def add_server(name: str, spec: ServerSpec) -> None:
    SERVERS[name] = spec


def ours_server(name: str, *extra: str, tries: bool = False, env: dict[str, str] | None = None) -> None:
    """Our server (``python -m monoai_tornado --backend openai`` in front of the upstream, with a
    memory limiter that never trips) with ``extra`` arguments."""
    add_server(name, ServerSpec((PYTHON, "-m", "monoai_tornado", "--backend", "openai", "--base-url",
                                 "{upstream}/v1", "--model", MODEL, "--no-agents", "--log-level", "error",
                                 "--port", "{port}", *NEVER_TRIPPING, *extra), ours=True, tries=tries, env=env or {}))


def add_line(name: str, server: str, plain: Callable[[], Shape] | None = None,
             stream: Callable[[], Shape] | None = None) -> None:
    """A line of the tables: ``server`` measured through ``plain`` and ``stream`` (default: OpenAI's
    ``/v1/chat/completions``)."""
    LINES[name] = LineSpec(server, plain or (lambda: openai_shape(False)), stream or (lambda: openai_shape(True)))


def _model_plain() -> Shape:
    return model_shape(False)


def _model_stream() -> Shape:
    return model_shape(True)


def _litellm_args(setup: Setup) -> tuple[str, ...]:
    return (ensure_litellm(), "--config", LITELLM_CONFIG, "--host", HOST, "--port", "{port}", "--num_workers", "1")


add_server("floor-proxy", ServerSpec((PYTHON, os.path.join(BENCH_DIR, "floor_proxy.py"), "--port", "{port}",
                                      "--upstream", "{upstream}")))
add_server("floor-proxy+ka", ServerSpec((PYTHON, os.path.join(BENCH_DIR, "floor_proxy.py"), "--port", "{port}",
                                         "--upstream", "{upstream}", "--keep-alive")))
add_server("floor-aiohttp", ServerSpec((PYTHON, os.path.join(BENCH_DIR, "floor_aiohttp.py"), "--port", "{port}",
                                        "--upstream", "{upstream}")))
add_server("litellm", ServerSpec(_litellm_args, env={
    "BENCH_UPSTREAM_BASE": "{upstream}/v1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
    "LITELLM_TELEMETRY": "False"}))
for _try in (False, True):
    _who = "try" if _try else "ours"
    ours_server(_who, tries=_try)
    ours_server(_who + "+asyncio", "--event-loop", "asyncio", tries=_try)
    ours_server(_who + "+tornado-http", "--http-parser", "tornado", tries=_try)
    ours_server(_who + "+as-client", "--upstream-stream", "as-client", tries=_try)
    add_line(_who + "-v1", _who)
    add_line(_who + "-v1+tornado-http", _who + "+tornado-http")  # Tornado's own HTTP/1 server side
    add_line(_who + "-v1+as-client", _who + "+as-client")  # non-streamed requests sent upstream whole
    add_line(_who + " /model", _who, _model_plain, _model_stream)
    add_line(_who + "+asyncio", _who + "+asyncio")
for _name in ("direct", "floor-proxy", "floor-proxy+ka", "floor-aiohttp", "litellm"):
    add_line(_name, _name)


def _routed_args(setup: Setup, replicas: int = 2) -> tuple[str, ...]:
    """Ours with ``--config``: two deployments of the mock upstream behind the one model, so the
    line costs what routing adds (choice, slot, retry bookkeeping) over ``ours-v1``."""
    path = os.path.join(tempfile.gettempdir(), f"monoai-bench-routed{replicas}-{os.getpid()}.toml")
    entry = f'[[models]]\nname = "{MODEL}"\nbase_url = "{setup.upstream}/v1"\n'
    with open(path, "w", encoding="utf-8") as file:
        file.write(entry * replicas + '[routing]\nstrategy = "least-busy"\n')
    return (PYTHON, "-m", "monoai_tornado", "--config", path, "--no-agents", "--log-level", "error",
            "--port", "{port}", *NEVER_TRIPPING)


add_server("ours-routed", ServerSpec(_routed_args, ours=True))
add_server("try-routed", ServerSpec(_routed_args, ours=True, tries=True))  # ab_cpu.py --try-server try-routed
add_server("ours-config", ServerSpec(lambda setup: _routed_args(setup, 1), ours=True))  # one deployment
add_server("try-config", ServerSpec(lambda setup: _routed_args(setup, 1), ours=True, tries=True))
add_line("ours-routed", "ours-routed")  # two replicas behind one model: compare with ours-v1


def _features_keys_file() -> str:
    return os.path.join(tempfile.gettempdir(), f"monoai-bench-features-keys-{os.getpid()}.json")


@functools.cache
def features_key() -> str:
    """The API key the ``+features`` servers require, made (``keys create``) on first use."""
    keys = _features_keys_file()
    if os.path.exists(keys):
        os.unlink(keys)
    made = subprocess.run([PYTHON, "-m", "monoai_tornado", "keys", "create", "--user", "bench", "--name", "wrk",
                           "--keys-file", keys], check=True, capture_output=True, text=True, timeout=60, cwd=OURS_DIR)
    return made.stdout.strip()


def _features_args(setup: Setup, usage_log: bool = True) -> tuple[str, ...]:
    """Ours with every feature of issue 34's last target on: an API key required (file store),
    request, token, spend and concurrency limits (memory store, never tripping), a priced model
    routed over two deployments, the access log written (to the bench's log file) and a usage
    log (``usage_log``: the issue's list leaves it out, the ``-usage-log`` servers too); metrics
    are always on. Compare with ``ours-v1``, the same server with them off."""
    tmp = tempfile.gettempdir()
    config = os.path.join(tmp, f"monoai-bench-features-{os.getpid()}.toml")
    entry = (f'[[models]]\nname = "{MODEL}"\nbase_url = "{setup.upstream}/v1"\n'
             'price_input = 0.15\nprice_output = 0.60\n')
    with open(config, "w", encoding="utf-8") as file:
        file.write(entry + entry + '[routing]\nstrategy = "least-busy"\n')
    features_key()
    return (PYTHON, "-m", "monoai_tornado", "--config", config, "--no-agents", "--log-level", "info",
            "--access-log", "on", "--port", "{port}", *NEVER_TRIPPING, "--spend-limit", "1000000/day",
            "--concurrency-limit", "100000", "--keys-file", _features_keys_file(), "--require-api-key",
            *(("--usage-log", os.path.join(tmp, f"monoai-bench-features-usage-{os.getpid()}.jsonl"))
              if usage_log else ()))


def _features_args_without_usage_log(setup: Setup) -> tuple[str, ...]:
    return _features_args(setup, usage_log=False)


def _features_headers() -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {features_key()}"),)


def features_shape(stream: bool) -> Shape:
    """``openai_shape`` with the key of the ``+features`` servers (a server without keys ignores it)."""
    shape = openai_shape(stream)
    return Shape(shape.path, shape.body, (*shape.headers, *_features_headers()), shape.marker)


def shape_for(stream: bool, *servers: str) -> Shape:
    """The ``/v1`` request to send ``servers``: ``features_shape`` when one of them is a
    ``+features`` server (the others ignore its key), else ``openai_shape``."""
    if any("+features" in server for server in servers):
        return features_shape(stream)
    return openai_shape(stream)


for _features, _args in (("+features", _features_args), ("+features-usage-log", _features_args_without_usage_log)):
    add_server("ours" + _features, ServerSpec(_args, ours=True, headers=_features_headers))
    add_server("try" + _features, ServerSpec(_args, ours=True, tries=True, headers=_features_headers))
    for _who in ("ours", "try"):  # every feature on: compare with ours-v1 (issue 34: within 10 %)
        add_line(_who + "-v1" + _features, _who + _features, lambda: features_shape(False),
                 lambda: features_shape(True))


def _otel_lines() -> None:
    """Ours with OpenTelemetry on (issue 33; needs the otel extra): every request traced
    (``ours+otel``), then one in ten (``ours+otel10``, OTEL_TRACES_SAMPLER=traceidratio). The
    spans go by OTLP/HTTP to the mock upstream, which answers 404: the batching, encoding and
    sending are paid, nothing is kept. Compare with ours-v1 (tracing off)."""
    for name, ratio in (("ours+otel", "1.0"), ("ours+otel10", "0.1")):
        ours_server(name, "--otel", env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{upstream}/v1/traces",
                                         "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio})
        add_line(name, name)


_otel_lines()


def anthropic_shape(stream: bool) -> Shape:
    """A request to the Anthropic Messages front (issue 30), the same prompt as ``openai_shape``."""
    body = json.dumps({"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": PROMPT}],
                       "stream": stream}, separators=(",", ":"))
    headers = (("Content-Type", "application/json"), ("x-api-key", "unused"), ("anthropic-version", "2023-06-01"))
    return Shape("/v1/messages", body, headers, b"event: message_stop" if stream else b'"stop_reason"')


# Ours through /v1/messages: what translating to and from Anthropic's dialect costs (compare with ours-v1).
add_line("ours-messages", "ours", lambda: anthropic_shape(False), lambda: anthropic_shape(True))


def make_line(name: str, setup: Setup) -> Line:
    name = ALIASES.get(name, name)
    spec = LINES.get(name)
    if spec is None:
        raise SystemExit(f"unknown line {name!r}; choose from {', '.join(LINES)}")
    return Line(name, spec.server, spec.plain(), spec.stream())


class GatewayServer(Server):
    """A server of the gateway benchmark: ready once ``shape`` is answered 200 with its marker."""

    def __init__(self, variant: Variant, shape: Shape, env: dict[str, str] | None, ready_timeout: float) -> None:
        super().__init__(variant, env=env, ready_timeout=ready_timeout, nofile=20_000)
        self.shape = shape

    def answers(self) -> bool:
        status, body = http_post(self.port, self.shape.path, self.shape.body, 5.0, headers=self.shape.headers)
        return status == 200 and self.shape.marker in body


class FastUpstream(Server):
    """The shared upstream (bench/fast_upstream.py): ready once it accepts a connection."""

    def answers(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=1):
            return True


def fast_upstream(load_cpus: str) -> FastUpstream:
    """The mock upstream every line is measured in front of, pinned to ``load_cpus``."""
    return FastUpstream(Variant("upstream", pinned(
        load_cpus, PYTHON, os.path.join(BENCH_DIR, "fast_upstream.py"), "--port", "{port}",
        "--chunks", str(CHUNKS), "--chunk-chars", str(CHUNK_CHARS))), ready_timeout=20.0)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (LiteLLM may start a worker process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def tree_rss(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            total += rss_bytes(p)
        except (OSError, RuntimeError):
            pass
    return total


# -- load: wrk with 64 connections --------------------------------------------------------------

def load_with_wrk(port: int, shape: Shape, duration: float, connections: int, cpus: str) -> dict[str, float]:
    return run_wrk(f"http://{HOST}:{port}{shape.path}", shape.body, shape.headers, duration, connections,
                   prefix=pinned(cpus))


# -- load: paced, open loop --------------------------------------------------------------------

async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, reusable) of one HTTP/1.1 answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep = b"\nconnection: close" not in lower
    if b"\ntransfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            data = await reader.readexactly(size + 2)
            if not size:
                break
            parts.append(data[:-2])
        return status, b"".join(parts), keep
    at = lower.find(b"\ncontent-length:")
    if at >= 0:
        length = int(lower[at + 16:lower.find(b"\r\n", at + 1)])
        return status, await reader.readexactly(length), keep
    return status, await reader.read(), False


async def _paced_main(port: int, shape: Shape, rate: float, duration: float, max_conns: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = post_request(port, shape.path, shape.body, shape.headers)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = [0]
    slots = asyncio.Semaphore(max_conns)
    latencies: list[float] = []
    errors = [0]

    async def one(due: float) -> None:
        async with slots:
            conn = idle.pop() if idle else None
            try:
                if conn is None:
                    opened[0] += 1
                    conn = await asyncio.open_connection(HOST, port)
                reader, writer = conn
                writer.write(request)
                status, body, keep = await _read_answer(reader)
                latencies.append(loop.time() - due)
                if status != 200 or shape.marker not in body:
                    errors[0] += 1
                if keep:
                    idle.append(conn)
                else:
                    writer.close()
            except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError):
                errors[0] += 1
                if conn is not None:
                    conn[1].close()

    count = max(1, int(rate * duration))
    start = loop.time() + 0.05
    tasks = []
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due)))
    _, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    errors[0] += len(pending)
    for _, writer in idle:
        writer.close()
    return {"latencies": latencies, "errors": errors[0], "sent": count, "connections": opened[0]}


def run_paced(port: int, shape: Shape, rate: float, duration: float, cpus: str) -> dict[str, float]:
    """The paced client in its own process on the load CPUs; p50/p99 from when each was due."""
    out = subprocess.run(
        [*pinned(cpus, PYTHON, os.path.abspath(__file__)), "--paced-client", json.dumps(
            {"port": port, "path": shape.path, "body": shape.body, "headers": shape.headers,
             "marker": shape.marker.decode(), "rate": rate, "duration": duration})],
        capture_output=True, text=True, timeout=duration + 90, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"paced client failed: {out.stderr[-1500:]}")
    data = json.loads(out.stdout)
    lat = data["latencies"]
    return {"paced_p50_ms": percentile(lat, 50) * 1000, "paced_p99_ms": percentile(lat, 99) * 1000,
            "paced_errors": data["errors"], "paced_sent": data["sent"]}


# -- one line, one round ------------------------------------------------------------------------

@dataclass
class Config:
    duration: float
    warmup: float
    connections: int
    paced_rate: float
    paced_duration: float
    #: Longest wait for a server to work off its queue after a load (seconds).
    idle_wait: float = 30.0


def wait_idle(pid: int | None, limit: float) -> None:
    """Wait (at most ``limit`` s) until the server has worked off what the last load left queued."""
    if not pid:
        return
    deadline = time.monotonic() + limit
    before = tree_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = tree_cpu(pid)
        if now - before < 0.025:  # under 10 % of a CPU
            return
        before = now


def measure_throughput(port: int, pid: int | None, line: Line, cfg: Config, cpus: str) -> dict[str, float]:
    """Requests/s, latency, CPU per request and errors with ``cfg.connections`` connections."""
    out: dict[str, float] = {}
    for label, shape in (("plain", line.plain), ("stream", line.stream)):
        if cfg.warmup > 0:
            load_with_wrk(port, shape, cfg.warmup, cfg.connections, cpus)
            wait_idle(pid, cfg.idle_wait)
        cpu0 = tree_cpu(pid) if pid else 0.0
        result = load_with_wrk(port, shape, cfg.duration, cfg.connections, cpus)
        cpu = tree_cpu(pid) - cpu0 if pid else float("nan")
        wait_idle(pid, cfg.idle_wait)
        out[f"{label}_rps"] = result["rps"]
        out[f"{label}_p50_ms"] = result["p50_ms"]
        out[f"{label}_p99_ms"] = result["p99_ms"]
        out[f"{label}_errors"] = result["errors"]
        out[f"{label}_cpu_ms"] = 1000 * cpu / result["requests"] if result["requests"] and pid else float("nan")
    out["rss_mib"] = tree_rss(pid) / 2**20 if pid else float("nan")
    return out


def paced_rate(cfg: Config, measured: dict[str, dict[str, float]]) -> float:
    """``cfg.paced_rate``, lowered to half the slowest server's streamed req/s in this round
    (so that every server carries it), never under 2 req/s."""
    slowest = min((m["stream_rps"] for m in measured.values() if m["stream_rps"] > 0), default=cfg.paced_rate)
    return max(2.0, min(cfg.paced_rate, slowest / 2))


def run(line_names: Sequence[str], rounds: int, cfg: Config, setup: Setup) -> dict[str, list[dict[str, float]]]:
    """Start every server once (LiteLLM takes long to start), then measure the lines in turn,
    round after round; only the line being measured has load, the others idle."""
    lines = [make_line(n, setup) for n in line_names]
    results: dict[str, list[dict[str, float]]] = {ln.name: [] for ln in lines}
    with contextlib.ExitStack() as stack:
        running: dict[str, tuple[int, int | None]] = {"direct": (setup.upstream_port, None)}
        for ln in lines:
            if ln.server in running:
                continue
            started = time.monotonic()
            timeout = 300.0 if ln.server == "litellm" else 60.0
            srv = stack.enter_context(GatewayServer(setup.variant(ln.server), ln.stream, setup.env.get(ln.server),
                                                    timeout))
            running[ln.server] = (srv.port, srv.pid)
            print(f"  {ln.server} up on port {srv.port} ({time.monotonic() - started:.1f} s)", file=sys.stderr,
                  flush=True)
        for r in range(rounds):
            measured: dict[str, dict[str, float]] = {}
            for ln in lines:  # the throughput of every line, then the latency at a rate all carry
                port, pid = running[ln.server]
                measured[ln.name] = measure_throughput(port, pid, ln, cfg, setup.load_cpus)
            rate = paced_rate(cfg, measured)
            for ln in lines:
                started = time.monotonic()
                port, pid = running[ln.server]
                m = measured[ln.name]
                m.update(run_paced(port, ln.stream, rate, max(cfg.paced_duration, 20 / rate), setup.load_cpus))
                m["paced_rate"] = rate
                wait_idle(pid, cfg.idle_wait)
                results[ln.name].append(m)
                shown = ", ".join(f"{k}={fmt(v, 2 if abs(v) < 100 else 0)}" for k, v in m.items())
                print(f"  [round {r + 1}/{rounds}] {ln.name}: {shown}", file=sys.stderr, flush=True)
    return results


# -- the tables ---------------------------------------------------------------------------------

def _per_round(results: dict[str, list[dict[str, float]]], name: str, key: str) -> list[float]:
    return [m.get(key, float("nan")) for m in results.get(name, [])]


#: The lines every figure is shown as a ratio to (when measured), with their short names (try-v1: an A/B).
REFS = (("floor-aiohttp", "fa"), ("floor-proxy+ka", "fpk"), ("litellm", "ll"), ("try-v1", "try"))


def _ratios(results: dict[str, list[dict[str, float]]], name: str, ref: str, key: str, diff: bool = False) -> float:
    """Median over rounds of ``name``'s figure divided by (or minus) ``ref``'s in the same round."""
    if ref not in results or not results[ref]:
        return float("nan")
    pairs = zip(_per_round(results, name, key), _per_round(results, ref, key))
    return median([a - b if diff else (a / b if b else float("nan")) for a, b in pairs])


def _ratio(results: dict[str, list[dict[str, float]]], name: str, ref: str, key: str, diff: bool = False) -> str:
    value = _ratios(results, name, ref, key, diff)
    if value != value:
        return "-"
    return _signed(value) if diff else fmt(value, 2) + "x"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "") + fmt(value, 2)


def added(results: dict[str, list[dict[str, float]]], pct: str) -> dict[str, list[float]]:
    """Per line, per round: paced latency minus direct's in the same round (ms)."""
    base = _per_round(results, "direct", f"paced_{pct}_ms")
    return {name: [m[f"paced_{pct}_ms"] - b for m, b in zip(rounds, base)]
            for name, rounds in results.items() if name != "direct"}


def _with_added(results: dict[str, list[dict[str, float]]]) -> dict[str, list[dict[str, float]]]:
    """The results with ``added_p50_ms`` and ``added_p99_ms`` in every round (when direct was measured)."""
    out = {name: [dict(m) for m in rounds] for name, rounds in results.items()}
    if "direct" not in results:
        return out
    for pct in ("p50", "p99"):
        for name, values in added(results, pct).items():
            for m, v in zip(out[name], values):
                m[f"added_{pct}_ms"] = v
    return out


def report(results: dict[str, list[dict[str, float]]], cfg: Config) -> None:
    refs = [(r, short) for r, short in REFS if r in results]
    ratio_heads = [f"x {short}" for _, short in refs]
    for label, title in (("plain", "non-streamed"), ("stream", "streamed")):
        header = ["line", "req/s", *ratio_heads, "CPU ms/req", *ratio_heads, "p50 ms", "p99 ms", "errors"]
        rows = []
        for name in results:
            row = [name, fmt(median(_per_round(results, name, f"{label}_rps")))]
            row += [_ratio(results, name, r, f"{label}_rps") for r, _ in refs]
            row.append(fmt(median(_per_round(results, name, f"{label}_cpu_ms")), 3))
            row += [_ratio(results, name, r, f"{label}_cpu_ms") for r, _ in refs]
            row += [fmt(median(_per_round(results, name, f"{label}_p50_ms")), 2),
                    fmt(median(_per_round(results, name, f"{label}_p99_ms")), 2),
                    fmt(sum(_per_round(results, name, f"{label}_errors")))]
            rows.append(row)
        shorts = ", ".join(f"{short} = {r}" for r, short in refs)
        print_table(f"{title.capitalize()} POST, {cfg.connections} connections, {cfg.duration:g} s per run "
                    f"(wrk; median of rounds; x: ratio to a line of the same round, {shorts})", header, rows)
    full = _with_added(results)
    header = ["line", "p50 ms", "p99 ms", "added p50", *[f"- {s}" for _, s in refs], "added p99",
              *[f"- {s}" for _, s in refs], "RSS MiB", *ratio_heads, "errors"]
    rows = []
    for name in results:
        row = [name, fmt(median(_per_round(results, name, "paced_p50_ms")), 2),
               fmt(median(_per_round(results, name, "paced_p99_ms")), 2)]
        for pct in ("p50", "p99"):
            if name == "direct":
                row += ["0", *["-" for _ in refs]]
                continue
            row.append(fmt(median(_per_round(full, name, f"added_{pct}_ms")), 2))
            row += [_ratio(full, name, r, f"added_{pct}_ms", diff=True) for r, _ in refs]
        row.append(fmt(median(_per_round(results, name, "rss_mib")), 1))
        row += [_ratio(results, name, r, "rss_mib") for r, _ in refs]
        row.append(fmt(sum(_per_round(results, name, "paced_errors"))))
        rows.append(row)
    rates = sorted({m.get("paced_rate", cfg.paced_rate) for rounds in results.values() for m in rounds})
    shown_rates = "/".join(f"{r:.3g}" for r in rates)
    print_table(f"Streamed, paced open loop: {shown_rates} req/s (per round) for {cfg.paced_duration:g} s, latency from when "
                f"each was due; added = minus direct's in the same round; - fa: minus floor-aiohttp's added", header, rows)


#: Summary figure -> the per-round key it is the median of.
_SUMMARY_KEYS = {"stream_rps": "stream_rps", "json_rps": "plain_rps", "stream_cpu_ms_per_req": "stream_cpu_ms",
                 "json_cpu_ms_per_req": "plain_cpu_ms", "added_p50_ms": "added_p50_ms",
                 "added_p99_ms": "added_p99_ms", "rss_mib": "rss_mib"}


def summary(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians by line, and by line the ratios to floor-aiohttp and floor-proxy+ka of the same round
    (``x_floor_aiohttp``, ``x_floor_proxy_ka``; latencies as differences in ms). A figure a line
    could not give (no request got through) is null. ``plain_rps`` is ``json_rps``'s old name."""
    full = _with_added(results)
    out: dict[str, Any] = {}
    for figure, key in _SUMMARY_KEYS.items():
        out[figure] = {n: median(_per_round(full, n, key)) for n in full
                       if not (n == "direct" and key in ("stream_cpu_ms", "plain_cpu_ms", "rss_mib", "added_p50_ms",
                                                         "added_p99_ms"))}
    out["plain_rps"] = out["json_rps"]
    for ref, label in (("floor-aiohttp", "x_floor_aiohttp"), ("floor-proxy+ka", "x_floor_proxy_ka")):
        if ref not in full:
            continue
        out[label] = {n: {figure: _ratios(full, n, ref, key, diff=figure.startswith("added"))
                          for figure, key in _SUMMARY_KEYS.items()} for n in full if n not in ("direct", ref)}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value if value == value else None

    return {key: clean(by_line) for key, by_line in out.items()}


def machine_line() -> str:
    from run_all import machine_line as line

    return line()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", help=f"comma separated (default {DEFAULT_LINES}; with --quick {QUICK_LINES})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 short rounds (under 4 minutes once installed)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of each wrk load")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--paced-rate", type=float, default=10.0, help="streamed requests per second, open loop (at most; see above)")
    parser.add_argument("--paced-duration", type=float, default=6.0)
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of the server measured ('' for none)")
    parser.add_argument("--load-cpus", default="1", help="taskset CPU list of the upstream and the load generators")
    parser.add_argument("--json", help="write the summary and every raw measurement to this file")
    parser.add_argument("--try-dir", help="a copy of the repository (its monoai_tornado/) measured as the 'try' "
                                          "lines: try, try /model, try+asyncio")
    parser.add_argument("--paced-client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.paced_client:
        spec = json.loads(args.paced_client)
        shape = Shape(spec["path"], spec["body"], tuple(tuple(h) for h in spec["headers"]), spec["marker"].encode())
        print(json.dumps(asyncio.run(_paced_main(spec["port"], shape, spec["rate"], spec["duration"], 256))))
        return
    if args.quick:
        args.rounds, args.duration, args.warmup, args.paced_duration = 2, 2.0, 0.5, 3.0
    cfg = Config(args.duration, args.warmup, args.connections, args.paced_rate, args.paced_duration,
                 idle_wait=5.0 if args.quick else 30.0)
    names = [n.strip() for n in (args.lines or (QUICK_LINES if args.quick else DEFAULT_LINES)).split(",") if n.strip()]
    if "litellm" in names:
        ensure_litellm()
    if "floor-aiohttp" in names and subprocess.run([PYTHON, "-c", "import aiohttp, uvloop"], capture_output=True,
                                                    check=False).returncode:
        raise SystemExit("gateway.py: the floor-aiohttp line needs aiohttp and uvloop: "
                         ".venv/bin/pip install -q -e '.[bench]' (or leave it out with --lines)")
    started = time.monotonic()
    upstream = fast_upstream(args.load_cpus)
    machine = machine_line()
    print(machine)
    with upstream:
        setup = Setup(upstream.port, args.server_cpus, args.load_cpus,
                      try_dir=os.path.abspath(args.try_dir) if args.try_dir else None)
        if any(SERVERS.get(LINES[ALIASES.get(n, n)].server, ServerSpec(())).ours for n in names if ALIASES.get(n, n) in LINES):
            if subprocess.run([PYTHON, "-c", "import uvloop"], capture_output=True, check=False).returncode:
                print("(uvloop is not installed: 'ours' runs on asyncio like 'ours+asyncio'; "
                      "pip install -e '.[fast]' to measure both)", flush=True)
        print(f"{len(names)} lines x {args.rounds} rounds; servers on CPU {args.server_cpus or 'any'}, upstream and "
              f"load on CPU {args.load_cpus or 'any'}; upstream answers {CHUNKS} chunks of {CHUNK_CHARS} chars"
              + (" (QUICK)" if args.quick else ""), flush=True)
        results = run(names, args.rounds, cfg, setup)
    report(results, cfg)
    print(f"\n(gateway benchmark: {time.monotonic() - started:.0f} s)")
    dump_json(args.json, {"machine": machine, "config": vars(args),
                          "summary": summary(results), "rounds": results})


if __name__ == "__main__":
    main()

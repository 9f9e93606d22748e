"""Shared helpers of the benchmarks: servers in subprocesses, /proc readings, statistics,
tables, A B A B alternation, and a minimal WebSocket client.

Every server is started on a free port of 127.0.0.1 and stopped (SIGTERM, then SIGKILL) by
the script that started it. Nothing here talks to anything but 127.0.0.1.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

HOST = "127.0.0.1"
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
#: The interpreter of the project's venv when there is one, else this one.
PYTHON = os.path.join(REPO_DIR, ".venv", "bin", "python")
if not os.path.exists(PYTHON):
    PYTHON = sys.executable

#: The answer every server gives: 64 chunks of 4 characters.
CHUNKS = 64
CHUNK_CHARS = 4
PROMPT_BODY = '{"prompt":"Say something about benchmarks, please."}'

#: No-op limits: they never trip during a benchmark.
NEVER_TRIPPING = ["--limit", "100000000/minute", "--token-limit", "100000000000/minute"]
REDIS_URL = "redis://127.0.0.1:6379/15"


# -- command lines ---------------------------------------------------------------------------

def load_parser(doc: str, default_servers: str) -> argparse.ArgumentParser:
    """The options every load script takes (``--servers``, ``--rounds``, ``--client-procs``,
    ``--json``) and the hidden ones its client processes are started with."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--servers", default=default_servers, help=f"comma separated (default {default_servers})")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--json", help="also write the raw measurements to this file")
    # internal: one client process
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    return parser


def run_client_procs(script: str, port: int, connections: int, procs: int, extra: Sequence[str],
                     timeout: float, server_pid: int | None) -> tuple[list[dict[str, Any]], float]:
    """Start ``procs`` client processes of ``script`` sharing ``connections``, wait until all
    print READY (connected and warm), tell them to go, and collect what each printed (JSON),
    with the server's CPU seconds meanwhile (NaN without ``server_pid``)."""
    shares = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    children = [subprocess.Popen(
        [PYTHON, script, "--client", "--port", str(port), "--connections", str(n), *extra,
         "--timeout", str(timeout)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in shares if n > 0]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"{os.path.basename(script)} client did not get ready: {line!r}")
        cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [json.loads(child.communicate(timeout=timeout + 60)[0]) for child in children]
        server_cpu = (cpu_seconds(server_pid) - cpu0) if server_pid else float("nan")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return outputs, server_cpu


def client_figures(outputs: Sequence[dict[str, Any]], server_cpu: float) -> dict[str, float]:
    """What every closed-loop load reports from its client processes' outputs (``start``,
    ``end``, ``answers``, ``latencies`` to the first chunk, ``client_cpu``)."""
    seconds = max(o["end"] for o in outputs) - min(o["start"] for o in outputs)
    latencies = [x for o in outputs for x in o["latencies"]]
    answers = sum(o["answers"] for o in outputs)
    return {
        "seconds": seconds,
        "answers_per_s": answers / seconds,
        "first_p50_ms": percentile(latencies, 50) * 1000,
        "first_p99_ms": percentile(latencies, 99) * 1000,
        "server_cpu_ms_per_answer": 1000 * server_cpu / answers if answers else float("nan"),
        "client_cpu_pct": 100 * max(o["client_cpu"] for o in outputs) / seconds,
        "answers": answers,
    }


# -- servers ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """A server to measure: a name and the command line that starts it (``{port}`` filled in)."""

    name: str
    argv: tuple[str, ...]
    is_floor: bool = False
    cwd: str = REPO_DIR
    #: Headers every request to it carries (``ours+keys``: the API key).
    headers: tuple[tuple[str, str], ...] = ()


def floor_variant() -> Variant:
    return Variant("floor", (PYTHON, os.path.join(BENCH_DIR, "floor_server.py"), "--port", "{port}"),
                   is_floor=True)


#: Where ``python -m monoai_tornado`` runs from: its ``monoai_tornado/`` is the one measured.
#: Set BENCH_OURS_DIR to another checkout (or a copy with a change to try) to measure that one.
OURS_DIR = os.path.abspath(os.environ.get("BENCH_OURS_DIR", REPO_DIR))


def ours_variant(name: str, *extra: str) -> Variant:
    return Variant(name, (PYTHON, "-m", "monoai_tornado", "--demo-delay", "0",
                          "--demo-chunks", str(CHUNKS), "--demo-chunk-chars", str(CHUNK_CHARS),
                          "--no-agents", "--log-level", "warning", "--port", "{port}", *extra), cwd=OURS_DIR)


def keys_variant() -> Variant:
    """``ours`` with ``--require-api-key``: every request carries a key from a fresh keys file."""
    path = os.path.join(tempfile.mkdtemp(prefix="bench-keys-"), "keys.json")
    made = subprocess.run([PYTHON, "-m", "monoai_tornado", "keys", "create", "--user", "bench", "--keys-file", path],
                          cwd=OURS_DIR, capture_output=True, text=True, timeout=60, check=True)
    key = made.stdout.splitlines()[0]
    variant = ours_variant("ours+keys", "--keys-file", path, "--require-api-key")
    return Variant(variant.name, variant.argv, cwd=variant.cwd, headers=(("Authorization", f"Bearer {key}"),))


VARIANTS: dict[str, Callable[[], Variant]] = {
    "floor": floor_variant,
    "ours": lambda: ours_variant("ours"),
    "ours+memory": lambda: ours_variant("ours+memory", *NEVER_TRIPPING),
    "ours+redis": lambda: ours_variant("ours+redis", "--redis-url", REDIS_URL, *NEVER_TRIPPING),
    "ours+keys": keys_variant,
}


def variants(names: Sequence[str]) -> list[Variant]:
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown server(s) {unknown}; choose from {list(VARIANTS)}")
    return [VARIANTS[n]() for n in names]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_nofile(wanted: int = 20_000) -> int:
    """Raise this process's open-file limit towards ``wanted`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Server:
    """A server subprocess on a free port; use as a context manager (always stopped)."""

    def __init__(self, variant: Variant, *, nofile: int | None = None, env: dict[str, str] | None = None,
                 ready_timeout: float = 30.0) -> None:
        self.variant = variant
        self.port = free_port()
        self.nofile = nofile
        self.env = env
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: a server that logs under load must never block on a full pipe.
        self.stderr = tempfile.TemporaryFile()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _preexec(self) -> None:
        os.setsid()  # own process group: stopping it never touches us
        if self.nofile:
            raise_nofile(self.nofile)

    def start(self) -> "Server":
        argv = [a.replace("{port}", str(self.port)) for a in self.variant.argv]
        env = {**os.environ, **(self.env or {})}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.variant.cwd, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(argv, cwd=self.variant.cwd, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     preexec_fn=self._preexec)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def answers(self) -> bool:
        """Whether the server answers its readiness request (``POST /model``) with a 200."""
        status, _ = http_post(self.port, "/model", PROMPT_BODY, timeout=2.0, headers=self.variant.headers)
        return status == 200

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.variant.name} exited with {self.proc.returncode}:\n{self._stderr_tail()}")
            try:
                if self.answers():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.variant.name} not ready on port {self.port} after {self.ready_timeout} s:\n"
                           f"{self._stderr_tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        err = self._stderr_tail()
        if err:
            print(f"  [{self.variant.name} stderr, last lines] {err}", file=sys.stderr)
        self.stderr.close()
        self.proc = None

    def _stderr_tail(self, size: int = 1500) -> str:
        self.stderr.flush()
        end = self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, end - size))
        return self.stderr.read().decode(errors="replace").strip()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def post_request(port: int, path: str, body: str, headers: Sequence[tuple[str, str]] = (), *,
                 close: bool = False) -> bytes:
    """The bytes of one HTTP/1.1 POST to 127.0.0.1 (``Content-Type: application/json`` unless
    ``headers`` name one), for load generators to send again and again."""
    data = body.encode()
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers = (("Content-Type", "application/json"), *headers)
    if close:
        headers = (*headers, ("Connection", "close"))
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{extra}Content-Length: {len(data)}\r\n\r\n".encode() + data


def http_post(port: int, path: str, body: str, timeout: float = 5.0,
              headers: Sequence[tuple[str, str]] = ()) -> tuple[int, bytes]:
    """One blocking HTTP/1.1 POST to 127.0.0.1 (readiness checks; not for load)."""
    request = post_request(port, path, body, headers, close=True)
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, rest


# -- wrk -------------------------------------------------------------------------------------

#: A wrk script: POST ``body`` with ``headers``, then print the summary as one JSON line.
_WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = %(body)s
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%%d,\"duration_us\":%%d,\"p50_us\":%%d,\"p99_us\":%%d,\"errors\":%%d,\"status_errors\":%%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def wrk_path() -> str | None:
    """Debian's wrk, else one on the PATH, else None."""
    if os.path.exists("/usr/bin/wrk"):
        return "/usr/bin/wrk"
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_wrk(url: str, body: str, headers: Sequence[tuple[str, str]], duration: float, connections: int,
            threads: int = 1, prefix: Sequence[str] = ()) -> dict[str, float]:
    """One wrk load of POSTs to ``url`` (``prefix``: e.g. taskset); requests/s, latencies in ms, errors."""
    wrk = wrk_path()
    if wrk is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    lines = "\n".join(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}" for name, value in headers)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % {"body": _lua_string(body), "headers": lines})
        script = f.name
    try:
        out = subprocess.run(
            [*prefix, wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
             "--timeout", "10s", "-s", script, url],
            capture_output=True, text=True, timeout=duration + 60, check=False)
    finally:
        os.unlink(script)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-1000:]} {out.stderr[-1000:]}")
    data = json.loads(line[len("BENCHJSON "):])
    seconds = data["duration_us"] / 1e6
    return {"requests": data["requests"], "seconds": seconds, "rps": data["requests"] / seconds,
            "p50_ms": data["p50_us"] / 1000, "p99_ms": data["p99_us"] / 1000,
            "errors": data["errors"] + data["status_errors"]}


# -- /proc readings --------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


# -- statistics and tables -------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def fmt(value: Any, digits: int = 0) -> str:
    if isinstance(value, str):
        return value
    if value is None or value != value:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    print()
    print(title)
    print("  ".join(str(h).ljust(w) if i == 0 else str(h).rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    sys.stdout.flush()


@dataclass
class Metric:
    """How to show one measured figure: its key, column title, digits, and which way is better.

    ``ratio`` is ``"div"`` (ours / floor: throughput, memory), ``"diff"`` (ours - floor, for
    latencies) or ``None`` (no comparison).
    """

    key: str
    title: str
    digits: int = 0
    ratio: str | None = "div"
    diff_unit: str = ""


@dataclass
class Results:
    """Measurements by variant name, one dict per round, in the order they were taken."""

    rounds: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def add(self, variant: str, measurement: dict[str, float]) -> None:
        self.rounds.setdefault(variant, []).append(measurement)

    def to_json(self) -> dict[str, Any]:
        return self.rounds


def alternate(variant_list: Sequence[Variant], rounds: int, measure: Callable[[Variant, int], dict[str, float]],
              results: Results | None = None, *, label: str = "") -> Results:
    """Measure every variant once per round, in order (A B C A B C ...), floor first."""
    results = results or Results()
    for r in range(rounds):
        for variant in variant_list:
            started = time.monotonic()
            measurement = measure(variant, r)
            results.add(variant.name, measurement)
            shown = ", ".join(f"{k}={fmt(v, 2 if abs(v) < 100 else 0)}" for k, v in measurement.items()
                              if isinstance(v, (int, float)))
            print(f"  [{label} round {r + 1}/{rounds}] {variant.name}: {shown} ({time.monotonic() - started:.1f} s)",
                  file=sys.stderr, flush=True)
    return results


def report(title: str, results: Results, metrics: Sequence[Metric], floor: str = "floor") -> None:
    """One table: median of each metric over rounds, and its ratio (or difference) to the floor.

    Ratios are taken round by round (ours in round r against the floor in round r) and the
    median of those is shown, so a slow spell of the machine hits both sides of a ratio.
    """
    header = ["server"]
    for m in metrics:
        header.append(m.title)
        if m.ratio == "div":
            header.append("x floor")
        elif m.ratio == "diff":
            header.append(f"- floor{m.diff_unit}")
    header.append("rounds")
    floor_rounds = results.rounds.get(floor, [])
    rows = []
    for name, measured in results.rounds.items():
        row = [name]
        for m in metrics:
            values = [x.get(m.key, float("nan")) for x in measured]
            row.append(fmt(median(values), m.digits))
            if m.ratio is None:
                continue
            pairs = [(x.get(m.key, float("nan")), f.get(m.key, float("nan"))) for x, f in zip(measured, floor_rounds)]
            if m.ratio == "div":
                per_round = [a / b if b else float("nan") for a, b in pairs]
                row.append(fmt(median(per_round), 2) + "x")
            else:
                per_round = [a - b for a, b in pairs]
                row.append(("+" if median(per_round) >= 0 else "") + fmt(median(per_round), m.digits))
        row.append(str(len(measured)))
        rows.append(row)
    print_table(title, header, rows)


# -- a minimal WebSocket client --------------------------------------------------------------
# A raw asyncio protocol: a few kilobytes per connection and a few microseconds per message,
# so that the client is not what the WebSocket benchmarks measure.

_WS_KEY = base64.b64encode(b"monoai-bench-key").decode()


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    if n:
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
    else:
        masked = b""
    return head + mask + masked


class WsClientProtocol:
    """asyncio protocol of one client connection; ``on_text(str)`` gets every text message.

    Answers pings; ``opened`` is a future that resolves after the 101 handshake.
    """

    def __init__(self, path: str, port: int, on_text: Callable[["WsClientProtocol", str], None],
                 loop: Any) -> None:
        self.path = path
        self.port = port
        self.on_text = on_text
        self.transport: Any = None
        self.buffer = bytearray()
        self.handshaken = False
        self.opened = loop.create_future()
        self.closed = loop.create_future()

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write((f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {_WS_KEY}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(buf[:buf.find(b"\r\n")])
            del buf[:end + 4]
            if b" 101 " not in status_line:
                self._fail(ConnectionError(status_line.decode(errors="replace")))
                return
            self.handshaken = True
            if not self.opened.done():
                self.opened.set_result(None)
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if size - pos < head + n:
                break
            payload = bytes(buf[pos + head:pos + head + n])
            pos += head + n
            opcode = b0 & 0x0F
            if opcode == 0x1:
                self.on_text(self, payload.decode())
            elif opcode == 0x9:
                self.transport.write(ws_frame(payload, 0xA))
            elif opcode == 0x8:
                self.transport.close()
                break
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.transport.close()

    # client side
    def send_text(self, text: str) -> None:
        self.transport.write(ws_frame(text.encode()))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.write(ws_frame(struct.pack("!H", 1000), 0x8))
            finally:
                self.transport.close()


async def ws_connect_many(port: int, path: str, count: int, on_text: Callable[[WsClientProtocol, str], None],
                          *, concurrency: int = 100, timeout: float = 120.0) -> list[WsClientProtocol]:
    """Open ``count`` WebSocket connections, at most ``concurrency`` handshakes at a time."""
    import asyncio

    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    deadline = loop.time() + timeout

    async def one() -> WsClientProtocol:
        async with sem:
            for attempt in range(5):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError("connecting took too long")
                try:
                    _, proto = await asyncio.wait_for(loop.create_connection(
                        lambda: WsClientProtocol(path, port, on_text, loop), HOST, port), remaining)
                    await asyncio.wait_for(proto.opened, remaining)
                    return proto
                except (ConnectionError, OSError):
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
            raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one() for _ in range(count))))


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def dump_json(path: str | None, data: Any) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=1)

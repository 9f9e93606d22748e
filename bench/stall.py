"""Does a big prompt stall the event loop? ``/health`` latency while clients send 1 MB prompts.

Starts the server (demo model) on 127.0.0.1, then for each scenario runs ``--clients`` client
processes that POST a 1 MB prompt to ``/model`` in a loop, and meanwhile asks ``/health``
every 20 ms from this process; prints the ``/health`` p50/p99/max and how many prompts were
answered (by status). Everything is bounded by ``--seconds`` per scenario.

Scenarios: ``refused`` (``--limit 1/minute``: every prompt but the first is a 429, as from an
anonymous attacker) and ``admitted`` (a token limit that never trips: every prompt runs).

    .venv/bin/python bench/stall.py --seconds 10
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import sys
import time
from collections import Counter

import subprocess

from common import HOST, PYTHON, free_port  # type: ignore[import-not-found]

SCENARIOS = {
    "refused": ["--limit", "1/minute"],
    "admitted": ["--token-limit", "100000000000/minute"],
}


def client(port: int, seconds: float, size: int, results: "multiprocessing.Queue[dict[str, int]]") -> None:
    """POST a ``size``-byte prompt to /model until ``seconds`` have passed; report the statuses."""
    body = json.dumps({"prompt": "x" + " " * (size - 1)}).encode()
    statuses: Counter[str] = Counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            connection.request("POST", "/model", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            statuses[str(response.status)] += 1
        except OSError as exc:
            statuses[type(exc).__name__] += 1
        finally:
            connection.close()
    results.put(dict(statuses))


def probe(port: int, seconds: float) -> list[float]:
    """``/health`` latencies (seconds), one request every 20 ms for ``seconds``."""
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        started = time.perf_counter()
        connection.request("GET", "/health")
        connection.getresponse().read()
        latencies.append(time.perf_counter() - started)
        connection.close()
        time.sleep(0.02)
    return latencies


def wait_ready(port: int, path: str, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while True:
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=5)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            if time.monotonic() > end:
                raise
        time.sleep(0.1)


def run(name: str, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "monoai_tornado", "--port", str(port), "--log-level", "warning", "--demo-chunks", "4",
         "--demo-delay", "0", "--max-body-size", str(2 * args.size), *SCENARIOS[name]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, "/health")
        results: multiprocessing.Queue[dict[str, int]] = multiprocessing.Queue()
        clients = [multiprocessing.Process(target=client, args=(port, args.seconds, args.size, results))
                   for _ in range(args.clients)]
        for process in clients:
            process.start()
        time.sleep(0.5)  # the clients are sending
        latencies = probe(port, args.seconds - 1)
        statuses: Counter[str] = Counter()
        for _ in clients:
            statuses.update(results.get(timeout=args.seconds + 120))
        for process in clients:
            process.join(timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return {"scenario": name, "health_requests": len(latencies),
            "p50_ms": round(statistics.median(latencies) * 1000, 1), "p99_ms": round(p99 * 1000, 1),
            "max_ms": round(latencies[-1] * 1000, 1), "prompts": dict(statuses)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario (default 10)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--size", type=int, default=1_000_000, help="prompt bytes (default 1 MB)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    for name in args.scenarios.split(","):
        print(json.dumps(run(name, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

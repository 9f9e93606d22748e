"""OpenAI-compatible load: streamed ``POST /v1/chat/completions``, 64 chunks per answer.

    python bench/load_v1.py [--servers floor,ours,ours+memory,ours+redis] [--rounds 2]
                            [--connections 100] [--requests 20] [--client-procs 2]

Each keep-alive connection sends a streamed chat completion (``"stream": true``), reads the
``chat.completion.chunk`` events to ``data: [DONE]``, then sends the next, as an OpenAI SDK
client in a loop would. Reported per server, with ratios to the floor of the same round
(bench/floor_server.py streams the same 64 events, one flushed write each, and does nothing
else): content chunks/s, answers/s, first content chunk p50/p99 under that load and with one
connection alone, server CPU ms per answer. The load is the one ``bench/load_ws.py`` puts on
``/model/ws``, so the two tables compare the transports.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (HOST, Metric, Results, Server, Variant, alternate, client_figures, dump_json,  # noqa: E402
                    load_parser, percentile, post_request, raise_nofile, report, run_client_procs, variants)

DEFAULT_SERVERS = "floor,ours,ours+memory,ours+redis"
PATH = "/v1/chat/completions"
BODY = json.dumps({"model": "monoai-demo", "stream": True,
                   "messages": [{"role": "user", "content": "Say something about benchmarks, please."}]})
CONTENT = b'"delta":{"content":"'
DONE = b"data: [DONE]"


async def _read_answer(reader: asyncio.StreamReader, sent: float, first: list[float]) -> tuple[int, bool]:
    """Read one chunked SSE answer; returns (content chunks, ok). Appends the first chunk's latency."""
    head = await reader.readuntil(b"\r\n\r\n")
    ok = head[9:12] == b"200"
    chunks = 0
    tail = b""
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            break
        data = await reader.readexactly(size + 2)
        found = data.count(CONTENT)
        if found and not chunks:
            first.append(time.perf_counter() - sent)
        chunks += found
        tail = (tail + data)[-64:]
    return chunks, ok and DONE in tail


async def _client_main(port: int, connections: int, requests: int, timeout: float) -> dict[str, Any]:
    request = post_request(port, PATH, BODY)
    stats = {"chunks": 0, "answers": 0, "errors": 0}
    latencies: list[float] = []

    async def worker(measure: bool, count: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for _ in range(count):
                sent = time.perf_counter()
                writer.write(request)
                chunks, ok = await _read_answer(reader, sent, latencies if measure else [])
                if measure:
                    stats["chunks"] += chunks
                    stats["answers" if ok else "errors"] += 1
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(worker(False, 1) for _ in range(connections))), timeout)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu0 = time.process_time()
    start = time.monotonic()
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(worker(True, requests) for _ in range(connections)), return_exceptions=True), timeout)
    end = time.monotonic()
    stats["errors"] += sum(1 for o in outcomes if isinstance(o, BaseException))
    return {**stats, "start": start, "end": end, "client_cpu": time.process_time() - cpu0, "latencies": latencies}


async def _alone_main(port: int, requests: int) -> list[float]:
    reader, writer = await asyncio.open_connection(HOST, port)
    latencies: list[float] = []
    request = post_request(port, PATH, BODY)
    try:
        for _ in range(requests):
            sent = time.perf_counter()
            writer.write(request)
            await _read_answer(reader, sent, latencies)
    finally:
        writer.close()
    return latencies[10:]


def run_clients(port: int, connections: int, requests: int, procs: int, server_pid: int,
                timeout: float = 300.0) -> dict[str, float]:
    outputs, server_cpu = run_client_procs(os.path.abspath(__file__), port, connections, procs,
                                           ["--requests", str(requests)], timeout, server_pid)
    figures = client_figures(outputs, server_cpu)
    answers = figures["answers"]
    return {**figures, "chunks_per_s": sum(o["chunks"] for o in outputs) / figures["seconds"],
            "chunks_per_answer": sum(o["chunks"] for o in outputs) / answers if answers else float("nan"),
            "errors": sum(o["errors"] for o in outputs)}


V1_METRICS = [Metric("chunks_per_s", "chunks/s"), Metric("answers_per_s", "answers/s"),
              Metric("first_p50_ms", "1st p50 ms", 2, "diff"), Metric("first_p99_ms", "1st p99 ms", 2, "diff"),
              Metric("alone_p50_ms", "alone p50 ms", 2, "diff"), Metric("alone_p99_ms", "alone p99 ms", 2, "diff"),
              Metric("chunks_per_answer", "chunks/answer", 1, None),
              Metric("server_cpu_ms_per_answer", "CPU ms/answer", 2),
              Metric("client_cpu_pct", "client CPU %", 0, None), Metric("errors", "errors", 0, None)]


def run(server_names: list[str], rounds: int, connections: int, requests: int, client_procs: int) -> Results:
    print(f"/v1 load: {connections} connections x {requests} streamed chat completions, 64 chunks each, "
          f"{rounds} round(s)", file=sys.stderr)

    def measure(variant: Variant, round_: int) -> dict[str, float]:
        with Server(variant, nofile=max(4096, connections * 2)) as server:
            result = run_clients(server.port, connections, requests, client_procs, server.pid)
            alone = asyncio.run(_alone_main(server.port, 210))
            result.update(alone_p50_ms=percentile(alone, 50) * 1000, alone_p99_ms=percentile(alone, 99) * 1000)
            return result

    return alternate(variants(server_names), rounds, measure, label="v1")


def title(connections: int, requests: int, rounds: int) -> str:
    return (f"OpenAI-compatible: POST /v1/chat/completions streamed, {connections} connections x {requests} "
            f"requests, 64 chunks of 4 chars (median of {rounds} rounds; ratios to the floor of the same round)")


def main() -> None:
    parser = load_parser(__doc__ or "", DEFAULT_SERVERS)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20, help="streamed requests per connection, in sequence")
    args = parser.parse_args()
    if args.client:
        raise_nofile(args.connections + 1024)
        print(json.dumps(asyncio.run(_client_main(args.port, args.connections, args.requests, args.timeout))))
        return
    results = run(args.servers.split(","), args.rounds, args.connections, args.requests, args.client_procs)
    report(title(args.connections, args.requests, args.rounds), results, V1_METRICS)
    dump_json(args.json, results.to_json())


if __name__ == "__main__":
    main()

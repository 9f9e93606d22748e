"""WebSocket load: 200 connections each sending 20 prompts in sequence, 64 chunks per answer.

    python bench/load_ws.py [--servers floor,ours,ours+memory,ours+redis] [--rounds 2]
                            [--connections 200] [--prompts 20] [--client-procs 2] [--paced-rate R]

Each connection sends a prompt, reads the chunk messages up to ``complete``, then sends the
next prompt. Reported per server, with ratios to the floor of the same round:

- chunk messages/s: ``{"type":"chunk"}`` messages delivered per second, all connections;
- chunk chars/s: characters of chunk content delivered per second. Both servers send one
  message per model chunk (ours joins chunks only while a slow reader's socket is full,
  which this client never lets happen), so messages/s compare directly;
- answers/s: ``complete`` messages per second;
- first chunk p50/p99: from sending a prompt to receiving its first chunk, in ms, under that
  load. Every connection always waits for an answer, so the server is saturated and this is
  mostly queueing: how long the server takes to get round to a new prompt;
- paced p50/p99: the same at a fixed offered load that both servers carry (by default half
  the floor's throughput in that round, over 50 connections; open loop, measured from when
  each prompt was due): the latency a user sees from a server that is busy but not overloaded;
- alone p50/p99: the same with one connection alone on the server (200 prompts in sequence,
  after the load): the length of the path from prompt to first chunk;
- server CPU ms per answer; client CPU %: how busy the client processes were (near 100 %
  means the client, not the server, may be the limit: raise ``--client-procs``).

The client is a raw asyncio WebSocket protocol (bench/common.py), a few microseconds per
message, run in ``--client-procs`` processes (default 2) apart from the server; every
connection is opened and warmed up (one prompt) before the clock starts.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (PROMPT_BODY, Metric, Results, Server, Variant, WsClientProtocol,  # noqa: E402
                    alternate, client_figures, dump_json, load_parser, percentile, raise_nofile, report, run_client_procs,
                    variants, ws_connect_many)

DEFAULT_SERVERS = "floor,ours,ours+memory,ours+redis"
PATH = "/model/ws"


# -- one client process ----------------------------------------------------------------------

class _Conn:
    __slots__ = ("proto", "sent", "t_sent", "got_first", "done")

    def __init__(self) -> None:
        self.proto: WsClientProtocol | None = None
        self.sent = 0
        self.t_sent = 0.0
        self.got_first = False
        self.done = False


async def _client_main(port: int, connections: int, prompts: int, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    now = time.monotonic
    loads = json.loads
    conns: dict[WsClientProtocol, _Conn] = {}
    stats = {"messages": 0, "chars": 0, "answers": 0, "errors": 0, "other": 0}
    latencies: list[float] = []
    measuring = [False]
    remaining = [0]
    all_done: asyncio.Future[None] = loop.create_future()

    def send_prompt(conn: _Conn) -> None:
        conn.sent += 1
        conn.got_first = False
        conn.t_sent = now()
        assert conn.proto is not None
        conn.proto.send_text(PROMPT_BODY)

    def finish(conn: _Conn) -> None:
        if conn.done:
            return
        conn.done = True
        remaining[0] -= 1
        if remaining[0] == 0 and not all_done.done():
            all_done.set_result(None)

    def on_text(proto: WsClientProtocol, text: str) -> None:
        conn = conns[proto]
        message = loads(text)
        kind = message.get("type")
        if kind == "chunk":
            if measuring[0]:
                if not conn.got_first:
                    latencies.append(now() - conn.t_sent)
                stats["messages"] += 1
                stats["chars"] += len(message["content"])
            conn.got_first = True
            return
        if kind == "complete" or "error" in message:
            if measuring[0]:
                stats["answers" if kind == "complete" else "errors"] += 1
            if conn.sent < prompts:
                send_prompt(conn)
            else:
                finish(conn)
            return
        stats["other"] += 1

    protos = await ws_connect_many(port, PATH, connections, on_text)
    for proto in protos:
        conn = _Conn()
        conn.proto = proto
        conns[proto] = conn
    # Warm-up: one prompt per connection, not counted.
    remaining[0] = len(conns)
    for conn in conns.values():
        conn.sent = prompts - 1
        send_prompt(conn)
    await asyncio.wait_for(asyncio.shield(all_done), timeout)
    print("READY", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)

    all_done = loop.create_future()
    remaining[0] = len(conns)
    measuring[0] = True
    cpu0 = time.process_time()
    start = now()
    for conn in conns.values():
        conn.sent = 0
        conn.done = False
        send_prompt(conn)
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(all_done), timeout)
    except asyncio.TimeoutError:
        timed_out = True
    end = now()
    cpu = time.process_time() - cpu0
    for proto in protos:
        proto.close()
    return {**stats, "start": start, "end": end, "client_cpu": cpu, "latencies": latencies,
            "timed_out": timed_out}


async def _probe_main(port: int, prompts: int, timeout: float) -> list[float]:
    """One connection alone, prompts in sequence: first-chunk latency of an unloaded server."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    state: dict[str, Any] = {"t": 0.0, "first": False, "sent": 0, "done": loop.create_future()}

    def send(proto: WsClientProtocol) -> None:
        state["sent"] += 1
        state["first"] = False
        state["t"] = time.perf_counter()
        proto.send_text(PROMPT_BODY)

    def on_text(proto: WsClientProtocol, text: str) -> None:
        message = json.loads(text)
        if message.get("type") == "chunk":
            if not state["first"]:
                state["first"] = True
                latencies.append(time.perf_counter() - state["t"])
        elif message.get("type") == "complete" or "error" in message:
            if state["sent"] < prompts:
                send(proto)
            elif not state["done"].done():
                state["done"].set_result(None)

    (proto,) = await ws_connect_many(port, PATH, 1, on_text)
    try:
        send(proto)
        await asyncio.wait_for(state["done"], timeout)
    finally:
        proto.close()
    return latencies[10:]  # the first few warm the path up


async def _paced_main(port: int, connections: int, rate: float, count: int, timeout: float) -> list[float]:
    """Prompts sent on a fixed schedule (``rate`` per second) over ``connections`` connections.

    Open loop: the i-th prompt is due at ``start + i / rate`` whatever the server does, on a
    connection that has no answer pending. Latency runs from the time a prompt was *due*, so a
    server that falls behind is not excused by the client waiting for it.
    """
    import collections

    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    due_at: dict[WsClientProtocol, float] = {}
    idle: collections.deque[WsClientProtocol] = collections.deque()
    freed = asyncio.Event()
    answered = [0]
    all_answered: asyncio.Future[None] = loop.create_future()

    def on_text(proto: WsClientProtocol, text: str) -> None:
        message = json.loads(text)
        kind = message.get("type")
        if kind == "chunk":
            if proto in due_at:
                latencies.append(time.perf_counter() - due_at.pop(proto))
        elif kind == "complete" or "error" in message:
            due_at.pop(proto, None)
            idle.append(proto)
            freed.set()
            answered[0] += 1
            if answered[0] == count and not all_answered.done():
                all_answered.set_result(None)

    protos = await ws_connect_many(port, PATH, connections, on_text)
    idle.extend(protos)
    start = time.perf_counter() + 0.1
    deadline = loop.time() + timeout
    try:
        for i in range(count):
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            while not idle:
                freed.clear()
                await asyncio.wait_for(freed.wait(), max(0.001, deadline - loop.time()))
            proto = idle.popleft()
            due_at[proto] = due
            proto.send_text(PROMPT_BODY)
        await asyncio.wait_for(all_answered, max(0.001, deadline - loop.time()))
    finally:
        for proto in protos:
            proto.close()
    return latencies[count // 10:]  # the first tenth warms the path up


def paced_latency(port: int, rate: float, connections: int = 50, seconds: float = 8.0,
                  timeout: float = 120.0) -> dict[str, float]:
    """First-chunk latency at a fixed offered load that both servers can carry."""
    count = max(50, int(rate * seconds))
    latencies = asyncio.run(_paced_main(port, connections, rate, count, timeout))
    return {"paced_rate": rate, "paced_p50_ms": percentile(latencies, 50) * 1000,
            "paced_p99_ms": percentile(latencies, 99) * 1000}


def rest_latency(port: int, prompts: int = 210, timeout: float = 60.0) -> dict[str, float]:
    latencies = asyncio.run(_probe_main(port, prompts, timeout))
    return {"rest_p50_ms": percentile(latencies, 50) * 1000, "rest_p99_ms": percentile(latencies, 99) * 1000}


# -- driving client processes against one server ---------------------------------------------

def run_clients(port: int, connections: int, prompts: int, procs: int, timeout: float = 300.0,
                server_pid: int | None = None) -> dict[str, float]:
    """Start ``procs`` client processes, wait until all are connected and warm, go, collect."""
    outputs, server_cpu = run_client_procs(os.path.abspath(__file__), port, connections, procs,
                                           ["--prompts", str(prompts)], timeout, server_pid)
    figures = client_figures(outputs, server_cpu)
    seconds, answers = figures["seconds"], figures["answers"]
    return {
        **figures,
        "msgs_per_s": sum(o["messages"] for o in outputs) / seconds,
        "chars_per_s": sum(o["chars"] for o in outputs) / seconds,
        "msgs_per_answer": sum(o["messages"] for o in outputs) / answers if answers else float("nan"),
        "errors": sum(o["errors"] for o in outputs) + sum(1 for o in outputs if o["timed_out"]),
    }


WS_METRICS = [Metric("msgs_per_s", "chunk msgs/s"), Metric("chars_per_s", "chunk chars/s"),
              Metric("answers_per_s", "answers/s"), Metric("first_p50_ms", "1st p50 ms", 2, "diff"),
              Metric("first_p99_ms", "1st p99 ms", 2, "diff"),
              Metric("paced_p50_ms", "paced p50 ms", 2, "diff"), Metric("paced_p99_ms", "paced p99 ms", 2, "diff"),
              Metric("rest_p50_ms", "alone p50 ms", 2, "diff"), Metric("rest_p99_ms", "alone p99 ms", 2, "diff"),
              Metric("msgs_per_answer", "msgs/answer", 1, None),
              Metric("server_cpu_ms_per_answer", "CPU ms/answer", 2),
              Metric("client_cpu_pct", "client CPU %", 0, None), Metric("errors", "errors", 0, None)]


def run(server_names: list[str], rounds: int, connections: int, prompts: int, client_procs: int,
        paced_rate: float | None = None) -> Results:
    print(f"WebSocket load: {connections} connections x {prompts} prompts, 64 chunks per answer, "
          f"{rounds} round(s), {client_procs} client process(es)", file=sys.stderr)
    floor_rate: dict[int, float] = {}

    def measure(variant: Variant, round_: int) -> dict[str, float]:
        with Server(variant, nofile=max(4096, connections * 2)) as server:
            result = run_clients(server.port, connections, prompts, client_procs, server_pid=server.pid)
            if variant.name == "floor":
                floor_rate[round_] = result["answers_per_s"]
            # Half what the floor carried this round (both servers can carry it), unless given.
            rate = paced_rate or max(10.0, round(floor_rate.get(round_, 200.0) / 2))
            result.update(paced_latency(server.port, rate))
            result.update(rest_latency(server.port))
            return result

    return alternate(variants(server_names), rounds, measure, label="ws")


def main() -> None:
    parser = load_parser(__doc__ or "", DEFAULT_SERVERS)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--prompts", type=int, default=20, help="prompts per connection, in sequence")
    parser.add_argument("--paced-rate", type=float, default=None,
                        help="answers/s of the paced latency probe (default: half the floor's throughput)")
    args = parser.parse_args()
    if args.client:
        raise_nofile(args.connections + 1024)
        print(json.dumps(asyncio.run(_client_main(args.port, args.connections, args.prompts, args.timeout))))
        return
    results = run(args.servers.split(","), args.rounds, args.connections, args.prompts, args.client_procs,
                  args.paced_rate)
    report(f"WS /model/ws, {args.connections} connections x {args.prompts} prompts, 64 chunks of 4 chars "
           f"(median of {args.rounds} rounds; ratios to the floor of the same round)", results, WS_METRICS)
    dump_json(args.json, results.to_json())


if __name__ == "__main__":
    main()

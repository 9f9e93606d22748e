"""Footprint: server memory with 10,000 idle WebSocket connections, and server CPU per request.

    python bench/footprint.py [--servers floor,ours,ours+memory,ours+redis] [--rounds 2]
                              [--idle 10000] [--cpu-duration 5]

For each server, started fresh (its open-file limit raised through ``setrlimit`` in the
child), A B A B for ``--rounds`` rounds:

1. warm up: 20 WebSocket connections answer one prompt each, then close; RSS "before";
2. open ``--idle`` WebSocket connections (100 handshakes at a time) and hold them idle;
   after a second, RSS "after"; per-connection RSS = (after - before) / connections;
3. close them; load ``POST /model`` (64 connections, wrk or the Python generator) for
   ``--cpu-duration`` seconds: server CPU seconds per 1,000 requests (user + system, from
   /proc/PID/stat);
4. 100 WebSocket connections x 10 prompts: server CPU seconds per 1,000 answers.

RSS is VmRSS from /proc/PID/status. Ratios are to the floor of the same round.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (Metric, Results, Server, Variant, alternate, cpu_seconds, dump_json,  # noqa: E402
                    raise_nofile, report, rss_bytes, variants, ws_connect_many, PROMPT_BODY)
import load_http  # noqa: E402
import load_ws  # noqa: E402

DEFAULT_SERVERS = "floor,ours,ours+memory,ours+redis"
MiB = 1024 * 1024


async def _warm_up(port: int, connections: int = 20) -> None:
    loop = asyncio.get_running_loop()
    pending = {"n": connections}
    done = loop.create_future()

    def on_text(proto, text: str) -> None:  # type: ignore[no-untyped-def]
        if '"complete"' in text[:20] or '"error"' in text[:10]:
            pending["n"] -= 1
            if pending["n"] == 0 and not done.done():
                done.set_result(None)

    protos = await ws_connect_many(port, "/model/ws", connections, on_text)
    for proto in protos:
        proto.send_text(PROMPT_BODY)
    await asyncio.wait_for(done, 30)
    for proto in protos:
        proto.close()
    await asyncio.sleep(0.5)


async def _idle_rss(server: Server, count: int, settle: float) -> dict[str, float]:
    await _warm_up(server.port)
    before = rss_bytes(server.pid)
    started = time.monotonic()
    protos = await ws_connect_many(server.port, "/model/ws", count, lambda proto, text: None,
                                   concurrency=100, timeout=300)
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(settle)
    after = rss_bytes(server.pid)
    held = sum(1 for p in protos if not p.closed.done())
    for proto in protos:
        proto.close()
    await asyncio.sleep(0.5)
    return {"rss_before_mib": before / MiB, "rss_after_mib": after / MiB, "held": held,
            "kib_per_conn": (after - before) / held / 1024 if held else float("nan"),
            "connect_s": connect_seconds}


def measure_one(variant: Variant, *, idle: int, settle: float, cpu_duration: float, tool: str) -> dict[str, float]:
    with Server(variant, nofile=idle + 2048) as server:
        result = asyncio.run(_idle_rss(server, idle, settle))
        if cpu_duration > 0:
            cpu0 = cpu_seconds(server.pid)
            http = load_http.load(server.port, cpu_duration, 64, tool)
            result["cpu_s_per_1k_req"] = 1000 * (cpu_seconds(server.pid) - cpu0) / http["requests"]
            ws = load_ws.run_clients(server.port, 100, 10, 1, server_pid=server.pid)
            result["cpu_s_per_1k_answers"] = ws["server_cpu_ms_per_answer"]  # ms/answer == s/1,000
    return result


FOOTPRINT_METRICS = [Metric("rss_before_mib", "RSS idle MiB", 1), Metric("rss_after_mib", "RSS +conns MiB", 1),
                     Metric("kib_per_conn", "KiB/conn", 2), Metric("held", "held", 0, None),
                     Metric("cpu_s_per_1k_req", "CPU s/1k req", 3),
                     Metric("cpu_s_per_1k_answers", "CPU s/1k WS answers", 3)]


def run(server_names: list[str], rounds: int, idle: int, settle: float, cpu_duration: float, tool: str) -> Results:
    tool = load_http.pick_tool(tool)
    limit = raise_nofile(idle + 2048)
    if limit < idle + 100:
        raise SystemExit(f"open-file limit {limit} is too low for {idle} connections (raise the hard limit)")
    print(f"Footprint: {idle} idle WebSocket connections; CPU per 1,000 POST /model over {cpu_duration:g} s "
          f"({tool}) and per 1,000 WS answers; {rounds} round(s)", file=sys.stderr)

    def measure(variant: Variant, _round: int) -> dict[str, float]:
        return measure_one(variant, idle=idle, settle=settle, cpu_duration=cpu_duration, tool=tool)

    return alternate(variants(server_names), rounds, measure, label="footprint")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=DEFAULT_SERVERS, help=f"comma separated (default {DEFAULT_SERVERS})")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle", type=int, default=10_000, help="idle WebSocket connections to hold")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to wait before reading RSS")
    parser.add_argument("--cpu-duration", type=float, default=5.0, help="seconds of HTTP load for CPU/request (0: skip)")
    parser.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--json", help="also write the raw measurements to this file")
    args = parser.parse_args()
    results = run(args.servers.split(","), args.rounds, args.idle, args.settle, args.cpu_duration, args.tool)
    report(f"Footprint: {args.idle:,} idle WebSocket connections, CPU per 1,000 requests "
           f"(median of {args.rounds} rounds; ratios to the floor of the same round)", results, FOOTPRINT_METRICS)
    dump_json(args.json, results.to_json())


if __name__ == "__main__":
    main()

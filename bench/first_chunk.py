"""Time to the first content chunk: an OpenAI-compatible upstream asked directly, against the
same upstream asked through our ``/v1/chat/completions``.

    .venv/bin/python bench/first_chunk.py                                   # bench/fast_upstream.py
    .venv/bin/python bench/first_chunk.py --upstream http://127.0.0.1:8081/v1 --model smollm2

Starts our server (``--backend openai`` in front of the upstream) on 127.0.0.1, then asks the
same streamed chat completion ``--rounds`` times each way, alternating (direct, ours, direct,
...), and prints the medians of: the first event of any kind (an upstream often sends a role-only
chunk at once) and the first chunk with content. Without ``--upstream`` it starts
``bench/fast_upstream.py`` (no model: the difference is then our own cost).
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
import urllib.parse

from common import HOST, PYTHON, free_port  # type: ignore[import-not-found]
from stall import wait_ready  # type: ignore[import-not-found]


def first_events(base_url: str, model: str, prompt: str, max_tokens: int) -> tuple[float, float]:
    """Seconds to the first SSE event, and to the first one whose delta has content."""
    parts = urllib.parse.urlsplit(base_url)
    body = json.dumps({"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": prompt}]})
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    started = time.perf_counter()
    connection.request("POST", parts.path.rstrip("/") + "/chat/completions", body,
                       {"Content-Type": "application/json", "Accept": "text/event-stream"})
    response = connection.getresponse()
    first = content = None
    try:
        for raw in response:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            now = time.perf_counter() - started
            first = first if first is not None else now
            chunk = json.loads(line[5:])
            if any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or ()):
                content = now
                break
    finally:
        connection.close()
    if first is None or content is None:
        raise RuntimeError(f"{base_url}: no content chunk")
    return first, content


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", help="an OpenAI-compatible base URL on 127.0.0.1 (default: fast_upstream.py)")
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--prompt", default="Name three colours.")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    processes = []
    try:
        upstream = args.upstream
        if upstream is None:
            port = free_port()
            processes.append(subprocess.Popen([PYTHON, "bench/fast_upstream.py", "--port", str(port)],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_ready(port, "/health")
            upstream = f"http://{HOST}:{port}/v1"
        ours_port = free_port()
        processes.append(subprocess.Popen(
            [PYTHON, "-m", "monoai_tornado", "--port", str(ours_port), "--log-level", "warning", "--no-agents",
             "--backend", "openai", "--base-url", upstream, "--model", args.model],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_ready(ours_port, "/health")
        ours = f"http://{HOST}:{ours_port}/v1"
        figures: dict[str, list[tuple[float, float]]] = {"direct": [], "ours": []}
        first_events(upstream, args.model, args.prompt, args.max_tokens)  # warm both paths up
        first_events(ours, args.model, args.prompt, args.max_tokens)
        for _ in range(args.rounds):
            figures["direct"].append(first_events(upstream, args.model, args.prompt, args.max_tokens))
            figures["ours"].append(first_events(ours, args.model, args.prompt, args.max_tokens))
        for name, values in figures.items():
            print(json.dumps({"path": name, "rounds": len(values),
                              "first_event_ms": round(statistics.median(v[0] for v in values) * 1000, 2),
                              "first_content_ms": round(statistics.median(v[1] for v in values) * 1000, 2)}))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

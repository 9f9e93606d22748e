"""A tool loop over the Responses API: the WebSocket mode against HTTP with ``previous_response_id``.

    .venv/bin/python bench/responses_ws.py [--turns 20] [--loops 10] [--redis-url redis://127.0.0.1:6379/15]

One server process (``python -m monoai_tornado --backend openai``) in front of a mock upstream
(in this process, on 127.0.0.1) that asks for a tool call until the conversation holds
``--turns - 1`` tool results, then answers text. A client (the official ``openai`` SDK,
``AsyncOpenAI``) runs the agent loop ``--loops`` times each way, alternating:

- ``ws``: one ``client.responses.connect()`` per loop; each turn sends only the new
  ``function_call_output`` with ``previous_response_id`` (the connection keeps the last
  response) and reads the events up to ``response.completed``;
- ``http``: ``client.responses.create(previous_response_id=...)`` per turn (keep-alive
  connections of the SDK's pool), the whole ``response`` object;
- ``http-stream``: the same with ``stream=True`` (the same events as the WebSocket mode).

Printed: the median and best milliseconds per loop and per turn of each, and the ratio of
``ws`` to each HTTP line. Figures, not pass/fail; bounded in count and time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

import tornado.httpserver
import tornado.web

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import OURS_DIR, Server, Variant, free_port  # noqa: E402

import openai  # noqa: E402

TOOL = {"type": "function", "name": "step", "description": "One step of the task",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}
#: Longest one loop may take before the benchmark gives up (bounded in time).
LOOP_TIMEOUT = 60.0


class _Upstream(tornado.web.RequestHandler):
    """Chat completions, streamed: a tool call until ``turns - 1`` tool results, then text."""

    turns = 20

    async def post(self) -> None:
        body = json.loads(self.request.body)
        done = sum(1 for m in body["messages"] if m.get("role") == "tool")
        head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench"}
        if done < self.turns - 1:
            delta: dict[str, Any] = {"tool_calls": [{"index": 0, "id": f"call_{done + 1}", "type": "function",
                                                      "function": {"name": "step", "arguments": f'{{"n": {done}}}'}}]}
            finish = "tool_calls"
        else:
            delta, finish = {"content": "all steps done"}, "stop"
        events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", **delta}, "finish_reason": None}]},
                  {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
                  {**head, "choices": [], "usage": {"prompt_tokens": 20 + 8 * done, "completion_tokens": 8,
                                                    "total_tokens": 28 + 8 * done}}]
        self.set_header("Content-Type", "text/event-stream")
        self.write("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n")


def start_upstream(port: int) -> None:
    async def main() -> None:
        server = tornado.httpserver.HTTPServer(tornado.web.Application(
            [(r"/v1/chat/completions", _Upstream)], log_function=lambda handler: None))
        server.listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()


async def ws_loop(client: openai.AsyncOpenAI, turns: int) -> str:
    async with client.responses.connect() as connection:
        await connection.response.create(model="bench", input="run the task", tools=[TOOL])  # type: ignore[list-item]
        for _ in range(turns):
            async for event in connection:
                if event.type in ("response.completed", "response.failed", "error"):
                    break
            if event.type != "response.completed":
                raise RuntimeError(f"ws turn failed: {event}")
            response = event.response
            call = response.output[-1]
            if call.type != "function_call":
                return response.output_text
            await connection.response.create(
                model="bench", previous_response_id=response.id, tools=[TOOL],  # type: ignore[list-item]
                input=[{"type": "function_call_output", "call_id": call.call_id, "output": "ok"}])
    raise RuntimeError("the loop did not end")


async def http_loop(client: openai.AsyncOpenAI, turns: int, stream: bool) -> str:
    previous: str | None = None
    new: Any = "run the task"
    for _ in range(turns):
        if stream:
            events = await client.responses.create(model="bench", input=new, previous_response_id=previous,
                                                   tools=[TOOL], stream=True)  # type: ignore[list-item]
            response = None
            async for event in events:
                if event.type == "response.completed":
                    response = event.response
            assert response is not None
        else:
            response = await client.responses.create(model="bench", input=new, previous_response_id=previous,
                                                     tools=[TOOL])  # type: ignore[list-item]
        call = response.output[-1]
        if call.type != "function_call":
            return response.output_text
        previous = response.id
        new = [{"type": "function_call_output", "call_id": call.call_id, "output": "ok"}]
    raise RuntimeError("the loop did not end")


async def measure(base: str, turns: int, loops: int) -> dict[str, list[float]]:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, timeout=30)
    runs = {"ws": lambda: ws_loop(client, turns), "http": lambda: http_loop(client, turns, False),
            "http-stream": lambda: http_loop(client, turns, True)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(loops + 1):  # round 0 warms up
        for name, run in runs.items():
            started = time.perf_counter()
            answer = await asyncio.wait_for(run(), LOOP_TIMEOUT)
            if answer != "all steps done":
                raise RuntimeError(f"{name}: unexpected answer {answer!r}")
            if round_:
                times[name].append((time.perf_counter() - started) * 1000)
    await client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="model calls per loop (the last answers text)")
    parser.add_argument("--loops", type=int, default=10, help="loops measured each way (after one warm-up)")
    parser.add_argument("--redis-url", help="keep the stored responses in this Redis (as a fleet would)")
    args = parser.parse_args()
    if not 2 <= args.turns <= 200 or not 1 <= args.loops <= 100:
        parser.error("--turns 2..200, --loops 1..100")
    _Upstream.turns = args.turns
    upstream_port = free_port()
    start_upstream(upstream_port)
    argv = [sys.executable, "-m", "monoai_tornado", "--port", "{port}", "--backend", "openai", "--model", "bench",
            "--base-url", f"http://127.0.0.1:{upstream_port}/v1", "--no-agents", "--log-level", "warning"]
    if args.redis_url:
        argv += ["--redis-url", args.redis_url, "--redis-prefix", f"bench:responses:{os.getpid()}:"]
    with Server(Variant("ours", tuple(argv), cwd=OURS_DIR)) as server:
        times = asyncio.run(measure(server.url, args.turns, args.loops))
    print(f"{args.turns}-turn tool loop, {args.loops} loops each way, openai SDK {openai.__version__}"
          f"{', responses in Redis' if args.redis_url else ''}")
    print(f"{'mode':<12} {'ms/loop median':>15} {'best':>8} {'ms/turn':>8} {'ws / this':>10}")
    ws = statistics.median(times["ws"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<12} {median:>15.1f} {min(values):>8.1f} {median / args.turns:>8.2f} {ws / median:>10.2f}")


if __name__ == "__main__":
    main()

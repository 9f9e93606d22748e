"""A finished request is freed by reference counting: none of its objects is left in a reference
cycle for Python's cyclic garbage collector.

Each cycle a request leaves costs CPU twice: the collector runs more often, and it walks every
young object each time. Three cycles once did (an upstream call and its request's callbacks, a
handler and its front's event writer, a handler and the routing note of its run's context):
on a routed model they cost about a tenth of the server's CPU (bench/README.md). These requests
go through the real server, a real routing gateway and an upstream on a socket; what the
collector then finds (``gc.DEBUG_SAVEALL``) must hold nothing of this package.
"""
from __future__ import annotations

import gc
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from monoai_tornado import Application
from monoai_tornado.cli import build_parser
from monoai_tornado.config import DeploymentConfig, load_config
from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.routing import Gateway
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.ws_helpers import connect, read_until_end, send

MESSAGES = [{"role": "user", "content": "Say hello"}]
#: (path, body) of every front, streamed and not.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"model": "m", "messages": MESSAGES}),
    ("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True}),
    ("/v1/messages", {"model": "m", "max_tokens": 50, "messages": MESSAGES}),
    ("/v1/messages", {"model": "m", "max_tokens": 50, "messages": MESSAGES, "stream": True}),
    ("/v1/responses", {"model": "m", "input": "Say hello"}),
    ("/v1/responses", {"model": "m", "input": "Say hello", "stream": True}),
    ("/model", {"prompt": "Say hello"}),
    ("/model/stream", {"prompt": "Say hello"}),
]


def ours(garbage: list[Any]) -> Counter[str]:
    """The objects of this package among ``garbage``, by type (the test's own client and
    upstream may leave theirs)."""
    return Counter(type(o).__qualname__ for o in garbage if type(o).__module__.startswith("monoai_tornado"))


async def left_in_cycles(fetch: Any, url: str, socket: Any, rounds: int) -> Counter[str]:
    """What ``rounds`` passes over every front (and prompts on an open WebSocket) leave to the
    cyclic collector."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(rounds):
            for path, body in REQUESTS:
                answer = await fetch(url + path, "POST", body)
                assert answer.code == 200, (path, answer.code, answer.body[:300])
            await send(socket, {"prompt": "Say hello"})
            assert (await read_until_end(socket))[-1]["type"] == "complete"
        gc.collect()
        return ours(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("routed", [False, True], ids=["one-model", "routed"])
async def test_a_finished_request_leaves_no_cycle(routed: bool, serve: Any, counter: Any, fetch: Any,
                                                   tmp_path: Path) -> None:
    replies = [Reply(chunks=["Hel", "lo"], usage=(9, 2))] * (3 * (len(REQUESTS) + 1))
    async with FakeOpenAI(replies=replies) as upstream:
        if routed:
            path = tmp_path / "gateway.toml"
            entry = f'[[models]]\nname = "m"\nbase_url = "{upstream.base_url}"\n'
            path.write_text(entry * 2)
            parser = build_parser()

            def build(config: DeploymentConfig) -> OpenAIBackend:
                return OpenAIBackend(str(config.base_url), "m")

            gateway = Gateway(load_config(str(path), parser), build, counter)
            app = Application("T", gateway=gateway, token_counter=counter)
        else:
            app = Application("T", model=OpenAIBackend(upstream.base_url, "m"), token_counter=counter)
        url = serve(app)
        socket = await connect(url, "/model/ws")
        await left_in_cycles(fetch, url, socket, 1)  # warm-up: what is made once (caches, pools) is not the request's
        assert await left_in_cycles(fetch, url, socket, 2) == Counter()
        socket.close()
    assert len(upstream.requests) == 3 * (len(REQUESTS) + 1)
    assert all(json.dumps(r.body) for r in upstream.requests)

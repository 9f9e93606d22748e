"""A single-slot model server made usable by any number of clients: llama-cpp-python drops a
running streamed answer when another request arrives; behind ``max_concurrent = 1`` and a
``queue_timeout`` every client gets a complete 200, in turn. Real llama.cpp server (``llama``)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Servers
from tests.test_llama_real import LlamaServer, llama  # noqa: F401  (the module's llama.cpp server fixture)
from tests.test_routing_processes import ask, stream_once

pytestmark = [pytest.mark.llama, pytest.mark.process, pytest.mark.slow]


async def six_clients(base: str) -> list[Any]:
    port = int(base.rsplit(":", 1)[1])
    streamed = [stream_once(port, "smollm2", timeout=600) for _ in range(3)]
    plain = [asyncio.to_thread(ask, base, "smollm2", 600) for _ in range(3)]
    return list(await asyncio.gather(*streamed, *plain))


def test_max_concurrent_one_with_a_queue_answers_six_concurrent_clients(llama: LlamaServer, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "gateway.toml"
    path.write_text(f'[[models]]\nname = "smollm2"\nbase_url = "{llama.base_url}"\nmax_concurrent = 1\n'
                    'max_tokens = 16\ntemperature = 0\n[routing]\nqueue_timeout = 600\n')
    servers = Servers("--config", str(path), "--no-agents", "--log-level", "warning")
    try:
        answers = asyncio.run(six_clients(servers()))
    finally:
        servers.stop_all()
    streamed, plain = answers[:3], answers[3:]
    assert streamed == [True, True, True]  # each ended with [DONE], no error event
    for status, body, headers in plain:
        assert status == 200, json.dumps(body)
        assert body["choices"][0]["message"]["content"] and headers["X-Monoai-Deployment"] == "smollm2#1"

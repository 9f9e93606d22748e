"""The attempt that answered is billed at its own prices (API.md Part 3, "Money"): an unpriced
model whose priced fallback answered tells the fallback's cost. Real server process."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.processes import Servers, call, free_port

pytestmark = [pytest.mark.process, pytest.mark.slow]


@pytest.fixture
def servers() -> Iterator[Servers]:
    started = Servers("--demo-delay", "0")
    yield started
    started.stop_all()


def dead_chat_with_a_demo_backup(tmp_path: Path, backup: str = "", routing: str = "") -> str:
    """A config file: "chat" on a port nobody listens on, falling back to the demo "backup"."""
    config = tmp_path / "fallback.toml"
    config.write_text(f"""
[[models]]
name = "chat"
base_url = "http://127.0.0.1:{free_port()}/v1"

[[models]]
name = "backup"
backend = "demo"
{backup}
[routing]
fallbacks = {{ chat = ["backup"] }}
{routing}""")
    return str(config)


def test_a_priced_fallback_that_answered_tells_its_cost(servers: Servers, tmp_path: Path) -> None:
    config = dead_chat_with_a_demo_backup(tmp_path, backup="price_input = 1.0\nprice_output = 2.0\n")
    base = servers("--config", config)
    status, body = call(base + "/model", {"prompt": "hi", "model": "chat"})
    assert status == 200 and body["model"]["name"] == "backup"
    usage = body["usage"]
    assert usage["cost_usd"] == round((usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6, 9)
    # The same on /v1: the fallback answered, its cost is told.
    plain = call(base + "/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert plain[0] == 200 and plain[1]["model"] == "backup" and "cost_usd" in plain[1]["usage"]


def test_the_responses_front_names_the_model_that_answered(servers: Servers, tmp_path: Path) -> None:
    """An alias is answered as the model it maps to, a fallback by its own name, as on every front."""
    config = dead_chat_with_a_demo_backup(tmp_path, routing='aliases = { "claude-*" = "backup", "gpt-*" = "chat" }\n')
    base = servers("--config", config)
    status, body = call(base + "/v1/responses", {"model": "claude-x", "input": "hi", "max_output_tokens": 5})
    assert (status, body["model"]) == (200, "backup")
    streamed = urllib.request.urlopen(urllib.request.Request(  # chat fails first: the fallback answers
        base + "/v1/responses", data=json.dumps({"model": "gpt-x", "input": "hi", "stream": True}).encode()),
        timeout=10).read().decode()
    models = [json.loads(line[6:])["response"]["model"] for line in streamed.splitlines()
              if line.startswith("data: ") and '"response":' in line]
    assert models and set(models) == {"backup"}
    status, body = call(base + "/v1/responses", {"model": "gpt-x", "input": "hi", "max_output_tokens": 5})
    assert (status, body["model"]) == (200, "backup")

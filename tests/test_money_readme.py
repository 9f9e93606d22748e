"""README's "Money" paragraph, run as written: its TOML file and its commands against a real server
(on a free port instead of 8000), so that the cost and the 429 it shows cannot drift from the code."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import start_server, stop_server
from tests.test_readme import block, commands

pytestmark = [pytest.mark.process, pytest.mark.slow]


def run(command: str, port: int, cwd: Path) -> str:
    return subprocess.run(["bash", "-c", command.replace("localhost:8000", f"localhost:{port}")], cwd=cwd,
                          capture_output=True, text=True, timeout=30, check=True).stdout


def test_the_money_example_shows_cost_usd_then_spend_limited(tmp_path: Path) -> None:
    (tmp_path / "priced.toml").write_text(block("# priced.toml: the demo model, priced"))
    serve, first, loop, refused, stats = commands(block("-m monoai_tornado --config priced.toml"))
    options = serve.split("-m monoai_tornado ", 1)[1].split()
    options = [str(tmp_path / o) if o in ("priced.toml", "usage.jsonl") else o for o in options]
    base, proc = start_server(*options)
    port = int(base.rsplit(":", 1)[1])
    try:
        answer = json.loads(run(first, port, tmp_path))
        assert answer["usage"]["cost_usd"] == 0.00121  # the figure README shows
        assert run(loop, port, tmp_path).split() == ["200"] * 8 + ["429"] * 2  # as README shows
        body = json.loads(run(refused, port, tmp_path))
        assert body["code"] == "spend_limited" and body["retry_after"] > 0
        spend = json.loads(run(stats, port, tmp_path))["spend"]["0.01-usd-per-86400"]
        assert (spend["used_usd"], spend["reserved_usd"], spend["left_usd"]) == (0.00999, 0.0, 1e-05)
    finally:
        stop_server(proc)
    lines = (tmp_path / "usage.jsonl").read_text().splitlines()
    assert len(lines) == 9 and json.loads(lines[-1])["finish_reason"] == "length"
    shown = re.search(r'"cost_usd": ([0-9.]+)', block("-m monoai_tornado --config priced.toml"))
    assert shown is not None and float(shown.group(1)) == answer["usage"]["cost_usd"]

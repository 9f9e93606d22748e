"""Claude Code itself (``claude -p``, the npm package ``@anthropic-ai/claude-code``) against a real
server process through ``ANTHROPIC_BASE_URL``, in front of the test's OpenAI-compatible upstream:
it asks for its ``Read`` tool, runs it, sends the result back, and prints the upstream's answer.

The test setup installs Claude Code with npm when it is missing; when that cannot be done the
test is skipped with the reason (failed under CI)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.ci import skip_or_fail
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.processes import Servers

pytestmark = [pytest.mark.process, pytest.mark.slow]

PACKAGE = "@anthropic-ai/claude-code"


@pytest.fixture(scope="module")
def claude() -> str:
    """The ``claude`` command, installed globally with npm first when it is missing."""
    found = shutil.which("claude")
    if found is None and shutil.which("npm") is not None:
        try:
            subprocess.run(["npm", "install", "-g", PACKAGE], capture_output=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            pass
        found = shutil.which("claude")
    if found is None:
        skip_or_fail(f"Claude Code is not installed and `npm install -g {PACKAGE}` did not install it",
                     "CI installs it with npm")
    return found


async def test_claude_code_runs_a_tool_through_the_server_and_prints_the_upstreams_answer(claude, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("The secret number is 4242.\n")
    read = {"id": "call_read", "name": "Read", "arguments": json.dumps({"file_path": str(notes)})}
    replies = [Reply(chunks=["Let me read it."], tool_calls=[read]), Reply(chunks=["The notes say 4242."])]
    servers = Servers("--backend", "openai", "--model", "local-model", "--no-agents", "--log-level", "warning")
    async with FakeOpenAI(replies=replies, chunks=["(a side request)"]) as upstream:
        base = servers("--base-url", upstream.base_url)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
               "ANTHROPIC_BASE_URL": base, "ANTHROPIC_API_KEY": "sk-any", "ANTHROPIC_MODEL": "local-model",
               "ANTHROPIC_DEFAULT_HAIKU_MODEL": "local-model", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
               "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1"}
        process = await asyncio.create_subprocess_exec(
            claude, "-p", "What number is in notes.txt?", cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), 180)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            servers.stop_all()
    assert process.returncode == 0, (out.decode(), err.decode())
    assert out.decode().strip() == "The notes say 4242."
    asked, answered = (request.body for request in upstream.requests[:2])
    assert asked["stream"] is True and {"Read", "Bash"} <= {tool["function"]["name"] for tool in asked["tools"]}
    assistant, tool_turn = answered["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == "call_read" and tool_turn["tool_call_id"] == "call_read"
    assert "The secret number is 4242." in tool_turn["content"]  # what Claude Code's Read tool returned


def test_the_guides_claude_code_variables_are_the_ones_tested():
    guide = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for variable in ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_MODEL",
                     "ANTHROPIC_DEFAULT_HAIKU_MODEL"):
        assert variable in guide

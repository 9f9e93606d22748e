"""README.md, run as a new user runs it, so that it cannot drift from the code.

In a copy of the repository and a fresh virtual environment installed with the README's own
command, every shell command and code block that needs no network is run: the servers are
started (on a free port instead of 8000), probed with the README's own curl lines, then stopped.
Every block is either run here or listed in ``NOT_RUN`` with the reason; a new block must be
one or the other. Links must resolve in a clone.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.processes import free_port, stop_server, wait_for

ROOT = Path(__file__).resolve().parent.parent
#: README and the guides it sends readers to: their blocks are run (or excused) alike.
GUIDES = [ROOT / "README.md", *(ROOT / "docs" / name for name in
                                ("usage.md", "limits.md", "deploy.md", "models.md", "operations.md"))]
README = "\n".join(path.read_text(encoding="utf-8") for path in GUIDES)

#: Blocks not run, each found by a piece of its text, with the reason.
NOT_RUN = {
    "pip install -q -e '.[test]' && .venv/bin/python -m pytest -q":
        "the test command: CI (.ci/run) runs it word for word; run here it would recurse",
    '-m "not slow and not browser and not process"': "the fast part of the test command: run here it would recurse",
    "python -m monoai_tornado [--host 127.0.0.1]": "the synopsis of the options, not a command",
    "upstream monoai {": "nginx configuration",
    "--redis-url redis+cluster://10.0.0.21": "names a cluster's private addresses; tests/test_cluster_fleet.py "
                                             "runs the same options against a local three-master cluster",
    "OPENAI_API_KEY=sk-...": "needs an OpenAI-compatible upstream (network, or Ollama, vLLM, ...)",
    "from monoai.models import Model": "needs MonoAI itself and an OpenAI key",
    "python3 -m venv .venv-llama": "the llama.cpp recipe: .ci/llama-venv installs the same packages and "
                                   "tests/test_llama_real.py (pytest -m llama) runs the same server and options",
    "# Ollama (ollama serve; ollama pull llama3.2)": "needs Ollama or vLLM and their models; the same backend "
                                                    "and options are run against llama.cpp (tests/test_llama_real.py)",
    "# pip install openai; then, beside": "run by tests/test_openai_front.py (the openai SDK against a server)",
    "# pip install anthropic; then, beside": "run by tests/test_anthropic_front.py against python -m monoai_tornado",
    "export ANTHROPIC_BASE_URL=": "Claude Code in front of a real model; tests/test_claude_code.py runs it against "
                                  "a test upstream",
    "# pip install openai; with `.venv/bin/python -m monoai_tornado` running":
        "run by tests/test_responses_sdk.py against python -m monoai_tornado",
    'import OpenAI from "openai";': "needs the openai npm package (network); the same calls as the Python one",
    "# gateway.toml: two llama.cpp (or vLLM) replicas": "needs llama.cpp or vLLM servers and an OpenAI key; "
        "tests/test_routing_processes.py runs the same keys against three upstream processes",
    "python -m monoai_tornado --config examples/gateway.toml": "run by tests/test_routing_reload.py "
        "(every model of examples/gateway.toml in /v1/models, and a prompt naming one)",
    "curl -s localhost:8000/v1/models": "run by tests/test_openai_front.py against a server",
    "# priced.toml: the demo model, priced": "run by tests/test_money_readme.py (the file and commands of "
        "README's Money paragraph against a real server)",
    "-m monoai_tornado --config priced.toml": "run by tests/test_money_readme.py",
    "# 1. make a key for alice": "the same commands (keys create, --require-api-key, a call with the key) "
                                 "run in tests/test_keys_processes.py against real processes",
    "client = OpenAI(base_url=\"http://localhost:8000/v1\", api_key=KEY)": "needs a KEY made as above; "
                                 "keys on /v1 go through the same pipeline as tests/test_keys_http.py",
    "const socket = new WebSocket('ws://localhost:8000/model/ws', ['monoai'": "the key on fetch and as the "
                                 "WebSocket subprotocol is run in tests/test_keys_http.py (and by the playground)",
}
#: Blocks run by this module, found the same way.
RUN = [
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/python -m monoai_tornado",
    """curl -s -X POST localhost:8000/model -d '{"prompt":"hi"}'""",
    '{"prompt":"hi","response":"[demo model',  # the answer shown: checked against the real one
    "curl -s localhost:8000/\n",
    '{"prompt": "...", "response": "...", "model"',  # the result's shape: checked
    "import asyncio, json, websockets",
    "rate_limiter=RateLimiter([Limit(",
    'ai = Application("Embedded"',
    "python -m monoai_tornado --limit 10/minute --limit 1000/day",
    "# several worker processes on one port",
    'OpenAIBackend("http://127.0.0.1:11434/v1"',
    "def price_of(item: str) -> float:",
    "curl -s -X POST localhost:8000/agent/shop",
    "const ws = new WebSocket('ws://localhost:8000/model/ws');",  # in Chromium
    "const response = await fetch('/model/stream'",  # in Chromium
]


@dataclass(frozen=True)
class Block:
    lang: str
    text: str


def blocks() -> list[Block]:
    return [Block(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", README, re.S)]


def block(marker: str) -> str:
    found = [b.text for b in blocks() if marker in b.text]
    assert len(found) == 1, f"{len(found)} README blocks contain {marker!r}"
    return found[0]


def commands(text: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, comments and blanks dropped."""
    joined = text.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def inline_command(start: str) -> str:
    """A command the README shows inline (in backticks) that starts with ``start``."""
    found = re.findall(rf"`({re.escape(start)}[^`]*)`", README)
    assert found, f"README shows no `{start}...` command"
    return found[0]


def test_every_block_is_run_or_says_why_not():
    for b in blocks():
        claims = [m for m in [*RUN, *NOT_RUN] if m in b.text]
        assert len(claims) == 1, f"README block {b.text[:80]!r} is claimed by {claims}: run it here or say why not"


def anchors_of(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: path.name)
def test_links_work_in_a_clone(guide):
    links = re.findall(r"\]\(([^)\s]+)\)", guide.read_text(encoding="utf-8"))
    assert links
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        page, _, anchor = link.partition("#")
        target = (guide.parent / page).resolve() if page else guide
        assert target.is_relative_to(ROOT), f"{link} points outside the repository"
        assert target.exists(), f"{guide.name}: {link} does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in anchors_of(target), f"{guide.name}: no heading for {link}"


def test_readme_is_what_a_user_needs_in_the_first_hour():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 360  # first steps, the three client dialects, several models, tests
    for guide in GUIDES[1:]:
        assert f"](docs/{guide.name})" in readme, f"README does not link {guide.name}"
    # Commands run the project's interpreter: plain `python` works only in an activated venv.
    assert not re.findall(r"(?<![\w./-])python (?:-m monoai_tornado|examples/)", README)


def test_the_contract_in_the_repository_is_the_shared_one():
    shared = Path("/work/shared/spec/API.md")
    if not shared.exists():
        pytest.skip("no shared spec on this machine to compare with")
    assert (ROOT / "docs" / "API.md").read_bytes() == shared.read_bytes()


def test_screenshot_shows_this_projects_default_server():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from make_screenshot import APP_NAME, png_text
    finally:
        sys.path.remove(str(ROOT / "docs"))
    from monoai_tornado.cli import build_parser

    text = png_text(ROOT / "docs" / "playground.png")
    assert text.get("monoai_tornado:app") == APP_NAME == build_parser().get_default("name")
    assert text["monoai_tornado:command"].startswith("python -m monoai_tornado")


# --- running it ---------------------------------------------------------------------------------


class Clone:
    """A copy of the repository with its own .venv, where commands run as a user runs them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        bin_dir = path / ".venv" / "bin"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env.update(PATH=f"{bin_dir}:{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(path / ".venv"))

    def local(self, text: str) -> str:
        """The README's text aimed at this test's port instead of 8000."""
        return re.sub(r"\b8000\b", str(self.port), text)

    def sh(self, command: str, timeout: float = 300) -> str:
        proc = subprocess.run(["bash", "-c", self.local(command)], cwd=self.path, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        assert proc.returncode == 0, f"{command!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def start(self, argv: list[str], ready: str = "/health") -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, cwd=self.path, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for(f"http://127.0.0.1:{self.port}{ready}", seconds=30)
        except AssertionError:
            proc.kill()
            raise AssertionError(f"{argv} did not start:\n{proc.communicate()[0]}") from None
        return proc

    def server(self, command: str, ready: str = "/health") -> subprocess.Popen[str]:
        """A README server command, on this test's port."""
        command = self.local(command)
        if "--port" not in command:
            command += f" --port {self.port}"
        return self.start(["bash", "-c", f"exec {command}"], ready)

    def python(self, code: str, ready: str = "/health") -> subprocess.Popen[str]:
        return self.start([str(self.path / ".venv" / "bin" / "python"), "-c", self.local(code)], ready)


def stop(proc: subprocess.Popen[str]) -> str:
    output = stop_server(proc, timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output, output
    return output


def copy_of_repository(target: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", "artifacts", ".pytest_cache",
                                    ".venv-*", "build", "dist")
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


def answers(output: str) -> Iterator[object]:
    """The JSON documents of a curl's output (one answer, or SSE ``data:`` lines)."""
    if output.lstrip().startswith(("event:", "data:", ":")):
        for line in output.splitlines():
            if line.startswith("data:"):
                yield json.loads(line[5:])
    else:
        yield json.loads(output)


def probe(clone: Clone, curl_block: str) -> list[object]:
    """Run every curl line of a README block; each must answer JSON (or SSE) without an error."""
    results = []
    for command in commands(curl_block):
        assert command.startswith("curl "), command
        output = clone.sh(command + " --max-time 20", timeout=30)
        for answer in answers(output):
            assert not (isinstance(answer, dict) and "code" in answer and "error" in answer), (command, answer)
            results.append(answer)
    return results


def same_shape(shown: object, real: object) -> bool:
    if isinstance(shown, dict):
        return isinstance(real, dict) and all(k in real and same_shape(v, real[k]) for k, v in shown.items())
    return True


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    """A copy of the repository, installed with the README's first command (without its server)."""
    clone = Clone(copy_of_repository(tmp_path_factory.mktemp("readme") / "clone"))
    install = commands(block(RUN[0]))[0].rsplit(" && ", 1)[0]
    clone.sh(install, timeout=600)  # python3 -m venv .venv && .venv/bin/pip install -q -e .
    return clone


@pytest.mark.slow
@pytest.mark.process
def test_readme_runs_as_written(clone):
    serve = commands(block(RUN[0]))[0].rsplit(" && ", 1)[1]

    # The server as the README starts it, probed with the README's curl lines.
    proc = clone.server(serve)
    try:
        hi = probe(clone, block(RUN[1]))[0]
        shown = json.loads(block(RUN[2]))
        assert isinstance(hi, dict) and hi["model"] == shown["model"] and set(hi) == set(shown)
        assert hi["usage"] == shown["usage"] and hi["response"].startswith(shown["response"][:40])  # true counts
        assert same_shape(json.loads(block(RUN[4])), hi)
        results = probe(clone, block(RUN[3]))
        assert len(results) >= len(commands(block(RUN[3])))
        # The Python WebSocket snippet, with the extra the README names for it.
        clone.sh(inline_command(".venv/bin/pip install -q -e '.[client]'"), timeout=600)
        ws = subprocess.run([str(clone.path / ".venv" / "bin" / "python"), "-c", clone.local(block(RUN[5]))],
                            cwd=clone.path, env=clone.env, text=True, capture_output=True, timeout=60)
        assert ws.returncode == 0 and "usage:" in ws.stdout, ws.stdout + ws.stderr
    finally:
        stop(proc)

    # Rate limits right after the plain install (no redis package).
    proc = clone.server(commands(block(RUN[8]))[0])
    try:
        hi = probe(clone, block(RUN[1]))[0]
        assert isinstance(hi, dict) and hi["usage"]["total_tokens"] > 0
    finally:
        stop(proc)

    # The Python API block, served; then the embedding block.
    proc = clone.python(block(RUN[6]))
    try:
        assert probe(clone, block(RUN[1]))[0]["usage"]["total_tokens"] > 0
    finally:
        output = stop(proc)
    assert f"monoai_tornado: My App on http://127.0.0.1:{clone.port}" in output
    proc = clone.python(block(RUN[7]), ready="/ai/health")
    try:
        assert clone.sh(f"curl -s localhost:{clone.port}/") == '{"home": "my own handler"}'
        assert probe(clone, block(RUN[1]).replace("/model", "/ai/model"))[0]["usage"]
    finally:
        stop(proc)

    # Blocks that build an Application without serving it.
    for marker in (RUN[10], RUN[11]):
        clone.sh(f".venv/bin/python - <<'EOF'\n{block(marker)}\nEOF", timeout=60)

    # The shop agent of examples/, as the README serves it, asked with the README's curl.
    proc = clone.server(inline_command(".venv/bin/python -m monoai_tornado --agents examples.agent_with_tools:build_agents"))
    try:
        shop = probe(clone, block(RUN[12]))[0]
        assert isinstance(shop, dict) and shop["response"] == "The price_of tool returned 2.25."
    finally:
        stop(proc)


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.redis
def test_readme_scale_out_on_one_machine(clone):
    """After the test above, which needs the plain install (no redis package)."""
    from tests.support.ratelimit_fixtures import REDIS_URL, delete_prefix, need_redis

    need_redis()
    clone.sh(inline_command(".venv/bin/pip install -q -e '.[redis]'"), timeout=600)
    several = commands(block(RUN[9]))[0]  # the other line needs a Redis at redis.internal
    assert "--processes 4" in several and "redis://127.0.0.1:6379/0" in several
    prefix = f"test:readme:{uuid.uuid4().hex}:"
    # Two processes (two cores here), on a key prefix of this test's own.
    proc = clone.server(several.replace("--processes 4", "--processes 2") + f" --redis-prefix {prefix}")
    try:
        for attempt in range(2):  # a minute's window may turn during the first round: then once more
            user = f"readme-{attempt}"
            codes = [clone.sh(f"curl -s -o /dev/null -w '%{{http_code}}' -X POST localhost:{clone.port}/model "
                              f"-d '{{\"prompt\":\"hi\",\"user_id\":\"{user}\"}}'") for _ in range(11)]
            if codes == ["200"] * 10 + ["429"]:
                break
        assert codes == ["200"] * 10 + ["429"]  # one budget across the processes
    finally:
        stop(proc)
        delete_prefix(REDIS_URL, prefix)


@pytest.mark.process
async def test_readme_javascript_runs_in_the_browser(app_url, need_chromium):
    from tests.support.browser import browser_page, no_page_errors

    url = app_url("JS")
    port = url.rsplit(":", 1)[1]
    # console.log and console.error of a snippet are collected; the WebSocket one ends at its result.
    websocket = block(RUN[13]).replace("localhost:8000", f"localhost:{port}")
    fetch_sse = block(RUN[14])
    async with browser_page("readme-js") as (page, seen):
        await page.goto(url + "/health")
        logged = await page.evaluate("""() => new Promise(resolve => {
            const logs = [];
            const console = {log: (...a) => { logs.push(a); if (a[0] === 'Complete:') resolve(logs); },
                             error: (...a) => { logs.push(['error', ...a]); resolve(logs); }};
            %s
        })""" % websocket)
        chunks = [entry[1] for entry in logged if entry[0] == "Chunk:"]
        assert logged[-1][0] == "Complete:" and "".join(chunks) == logged[-1][1]["response"]
        assert "Ciao WebSocket" in logged[-1][1]["response"]
        logged = await page.evaluate("""async () => {
            const logs = [];
            const console = {log: (...a) => logs.push(a), error: (...a) => logs.push(['error', ...a])};
            %s
            return logs;
        }""" % fetch_sse)
        assert not [entry for entry in logged if entry[0] == "error"], logged
        assert logged[-1][0] == "usage" and logged[-1][1]["total_tokens"] > 0
        assert "Ciao mondo streaming" in "".join(entry[0] for entry in logged[:-1])
        no_page_errors(seen)

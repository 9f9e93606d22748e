"""``Application.serve()`` greets and logs exactly as ``python -m monoai_tornado`` does."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from tests.support.processes import free_port, post, stop_server, wait_for

SERVE = textwrap.dedent("""
    import sys
    from monoai_tornado import Application, DemoBackend
    from monoai_tornado.ratelimit import Limit, RateLimiter

    Application("Served", model=DemoBackend(), agents=None,
                rate_limiter=RateLimiter([Limit("request", 1, "hour")])).serve(port=int(sys.argv[1]))
""")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def run_and_refuse(argv: list[str], port: int) -> str:
    """Start the server, send two prompts (the second is refused), stop it; what it printed."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        codes = [post(f"http://127.0.0.1:{port}/model", {"prompt": "hi"})[0] for _ in range(2)]
        assert codes == [200, 429]
    finally:
        output = stop_server(proc)
    assert proc.returncode == 0
    return output


def normalized(output: str, port: int) -> list[str]:
    """From the greeting on, without timestamps, ports, durations and the polls of /health."""
    lines = output.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("monoai_tornado: ")):]
    lines = [line for line in lines if "GET /health" not in line]
    return [re.sub(r" id=[0-9a-f]{32} ", " id=ID ", re.sub(r" [\d.]+ms$", " MSms", TIMESTAMP.sub("", line)))
            .replace(str(port), "PORT") for line in lines]  # request ids are made anew every time


@pytest.mark.process
def test_serve_greets_and_logs_as_the_command_line():
    port = free_port()
    served = run_and_refuse([sys.executable, "-c", SERVE, str(port)], port)
    cli_port = free_port()
    from_cli = run_and_refuse([sys.executable, "-m", "monoai_tornado", "--port", str(cli_port), "--name", "Served",
                               "--limit", "1/hour", "--no-agents"], cli_port)  # (an hour: a minute window may end mid-test)
    assert f"monoai_tornado: Served on http://127.0.0.1:{port}" in served  # the greeting
    log_lines = [line for line in served.splitlines() if not line.startswith(("monoai_tornado:", "  "))]
    assert log_lines and all(TIMESTAMP.match(line) for line in log_lines), served
    assert len([line for line in served.splitlines() if "429" in line]) == 1, served  # logged once
    assert normalized(served, port) == normalized(from_cli, cli_port)

"""Without Chromium the browser tests say why they are skipped, and under CI they fail instead."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSER_TESTS = ["tests/test_browser.py", "tests/test_chat_playground.py", "tests/test_docs_page.py"]


def run_browser_tests(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["MONOAI_TEST_CHROMIUM"] = "/nonexistent/chromium"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *BROWSER_TESTS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.process
def test_missing_browser_is_a_skip_that_says_why():
    proc = run_browser_tests(ci=None)
    assert proc.returncode == 0, proc.stdout
    assert "skipped" in proc.stdout
    assert "/nonexistent/chromium is missing" in proc.stdout  # the reason, in `pytest -q`'s own output
    assert "apt-get install -y chromium" in proc.stdout


@pytest.mark.process
def test_missing_browser_fails_under_ci():
    proc = run_browser_tests(ci="true")
    assert proc.returncode != 0
    assert "skipped" not in proc.stdout
    assert "the browser tests must run" in proc.stdout

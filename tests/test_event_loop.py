"""The event loop the server runs on: uvloop when installed (the ``fast`` extra), else asyncio."""
from __future__ import annotations

import subprocess
import sys

import pytest

from monoai_tornado.extras import MissingExtra
from monoai_tornado.loops import loop_factory
from tests.support.processes import post, start_server, stop_server

try:
    import uvloop  # noqa: F401

    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False


def test_asyncio_is_asked_for_by_name() -> None:
    assert loop_factory("asyncio") == ("asyncio", None)


def test_auto_takes_uvloop_when_installed_else_asyncio() -> None:
    name, factory = loop_factory("auto")
    assert name == ("uvloop" if HAVE_UVLOOP else "asyncio")
    assert (factory is not None) == HAVE_UVLOOP


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(MissingExtra, match=r"pip install 'monoai_tornado\[fast\]'"):
        loop_factory("uvloop")


@pytest.mark.process
def test_the_command_line_refuses_uvloop_when_it_is_missing_and_serves_on_asyncio() -> None:
    if not HAVE_UVLOOP:
        out = subprocess.run([sys.executable, "-m", "monoai_tornado", "--event-loop", "uvloop", "--port", "0"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "--event-loop uvloop needs the 'uvloop' package" in out.stderr
    base, proc = start_server("--event-loop", "asyncio", "--log-level", "info", capture=True)
    try:
        status, answer = post(base + "/model", {"prompt": "hi"})
        assert status == 200 and answer["response"]
    finally:
        log = stop_server(proc)
    assert "event loop: asyncio" in log

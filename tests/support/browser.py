"""Driving the playground in Chromium through Playwright: a bounded page, its errors, its controls.

The server and Playwright's async API share the test's IOLoop. Every wait is bounded, and
every test is bounded as a whole (:func:`bounded`). Screenshots go to ``tests/artifacts/``.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pathlib
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

#: The browser the browser tests drive (``$MONOAI_TEST_CHROMIUM`` to point elsewhere).
CHROMIUM = os.environ.get("MONOAI_TEST_CHROMIUM", "/usr/bin/chromium")

ARTIFACTS = pathlib.Path(__file__).parent.parent / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 10_000

#: A browser test module's ``pytestmark``: skipped, saying why, when the browser is missing;
#: failed instead under CI; marked ``browser`` (tests/conftest.py).
BROWSER = pytest.mark.usefixtures("need_chromium")


def bounded(seconds: float) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Fail the test if it takes longer than ``seconds`` as a whole."""

    def decorate(test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.wait_for(test(*args, **kwargs), seconds)

        return run

    return decorate


class PageErrors:
    """Dialogs, uncaught exceptions and CSP violations seen by the page."""

    def __init__(self) -> None:
        self.dialogs: list[str] = []
        self.exceptions: list[str] = []
        self.console_errors: list[str] = []


@contextlib.asynccontextmanager
async def browser_page(name: str) -> AsyncIterator[tuple[Any, PageErrors]]:
    """A fresh Chromium page; a screenshot of it is saved as ``tests/artifacts/{name}.png``."""
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    seen = PageErrors()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS,
                                                   headless=True, timeout=30_000)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT_MS)

            async def on_dialog(dialog: Any) -> None:
                seen.dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("pageerror", lambda exc: seen.exceptions.append(str(exc)))
            page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
            try:
                yield page, seen
            finally:
                with contextlib.suppress(Exception):
                    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            await browser.close()


async def open_playground(page: Any, base_url: str, prefix: str = "") -> None:
    await page.goto(f"{base_url}{prefix}/playground")
    await page.wait_for_selector("#send:not([disabled])")
    assert await page.get_attribute("#status", "data-state") == "idle"


async def ask(page: Any, prompt: str, *, transport: str = "ws", target: str = "model") -> None:
    await page.select_option("#transport", transport)
    await page.select_option("#target", target)
    await page.fill("#prompt", prompt)
    await page.click("#send")


async def wait_state(page: Any, *states: str) -> str:
    await page.wait_for_function(
        "states => states.includes(document.getElementById('status').dataset.state)", arg=list(states))
    return await page.get_attribute("#status", "data-state")


async def ask_to_the_end(page: Any, prompt: str, *, transport: str = "ws", target: str = "model") -> str:
    """Ask, then wait until the answer ends: its final state, ``"done"`` or ``"error"``."""
    await ask(page, prompt, transport=transport, target=target)
    return await wait_state(page, "done", "error")


async def header_rows(page: Any) -> dict[str, str]:
    """The rate-limit headers the page shows, by name."""
    rows = await page.eval_on_selector_all(
        "#headers tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))")
    return {name: value for name, value in rows}


async def wait_until(condition: Callable[[], bool], seconds: float = 5) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def no_page_errors(seen: PageErrors) -> None:
    assert not seen.exceptions, seen.exceptions
    assert not seen.dialogs, seen.dialogs
    csp = [e for e in seen.console_errors if "Content Security Policy" in e or "Trusted Type" in e]
    assert not csp, csp


# A long prompt: the demo model repeats it, so the answer has many chunks.
LONG_PROMPT = " ".join(f"word{i}" for i in range(40))
# Seen while streaming: some text, status "streaming", Stop enabled (returns the partial text).
MID_STREAM = """() => {
  const answer = document.getElementById('answer').textContent;
  const streaming = document.getElementById('status').dataset.state === 'streaming';
  const stop = !document.getElementById('stop').disabled;
  return answer.length > 0 && streaming && stop ? answer : false;
}"""

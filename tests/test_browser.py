"""The playground in a real browser: Playwright driving Debian's Chromium.

The server and Playwright's async API share the test's IOLoop. Every wait is bounded, and
every test is bounded as a whole. Screenshots go to ``tests/artifacts/``; the README's
``docs/playground.png`` is made by ``docs/make_screenshot.py`` from the real server.

Under CI (``CI=true``) these tests must run: a missing browser fails them. Elsewhere they are
skipped when ``/usr/bin/chromium`` (or ``$MONOAI_TEST_CHROMIUM``) is missing, and pytest
says why (``-rs`` in pytest.ini).
"""
from __future__ import annotations

import asyncio
import json

import pytest
import tornado.httpserver
import tornado.web
from tornado.iostream import StreamClosedError

from monoai_tornado import DemoBackend
from monoai_tornado.agents import Agent, default_agents, tool
from monoai_tornado.agents import calculator as builtin_calculator
from monoai_tornado.backends.base import Backend
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.browser import (ARTIFACTS, BROWSER, LONG_PROMPT, MID_STREAM, ask, ask_to_the_end, bounded, browser_page,
                                   header_rows, no_page_errors, open_playground, wait_state, wait_until)
from tests.support.pages_helpers import page_specs

FROZEN_NOW = 1_700_000_030.0

pytestmark = BROWSER


@pytest.mark.parametrize("transport", ["ws", "sse"])
@bounded(60)
async def test_chunks_appear_before_the_end(app_url, transport):
    url = app_url("Stream", model=DemoBackend(delay=0.05), pages=True)
    async with browser_page(f"stream-{transport}") as (page, seen):
        await open_playground(page, url)
        await ask(page, LONG_PROMPT, transport=transport)
        partial = await (await page.wait_for_function(MID_STREAM)).json_value()
        if transport == "sse":
            await page.screenshot(path=str(ARTIFACTS / "mid-stream.png"), full_page=True)
        assert await wait_state(page, "done", "error", "cancelled") == "done"
        final = await page.text_content("#answer")
        assert final.startswith(partial) and len(partial) < len(final)
        assert "word39" in final
        assert await page.is_disabled("#stop") and await page.is_enabled("#send")
        usage = await page.text_content("#usage")
        assert "prompt" in usage and "completion" in usage and "tokens" in usage
        assert (await page.text_content("#error")) == ""
        if transport == "sse":
            note = await page.text_content("#headers-note")
            assert "HTTP 200" in note
        no_page_errors(seen)


@pytest.mark.parametrize("transport", ["ws", "sse"])
@bounded(60)
async def test_stop_cancels_the_run_on_the_server(app_url, transport):
    backend = ScriptedBackend([f"piece{i} " for i in range(200)], delay=0.05)
    url = app_url("Stop", model=backend, pages=True)
    async with browser_page(f"stop-{transport}") as (page, seen):
        await open_playground(page, url)
        await ask(page, "go on for a while", transport=transport)
        await page.wait_for_function(MID_STREAM)
        await page.click("#stop")
        assert await wait_state(page, "cancelled", "done", "error") == "cancelled"
        assert (await page.text_content("#status")) == "cancelled"
        shown = await page.text_content("#answer")
        assert shown.startswith("piece0 ") and "piece199" not in shown
        # The server stopped the backend call: nobody pays for tokens nobody reads.
        await wait_until(lambda: backend.cancelled == 1)
        assert backend.finished == 0
        assert await page.is_enabled("#send") and await page.is_disabled("#stop")
        if transport == "ws":
            # The connection stays usable: the next prompt runs to its end.
            backend.pieces = ["after ", "cancel"]
            assert await ask_to_the_end(page, "again", transport="ws") == "done"
            assert await page.text_content("#answer") == "after cancel"
        no_page_errors(seen)


@bounded(60)
async def test_rate_limited_answers_show_their_retry_time(app_url):
    limiter = RateLimiter([Limit("request", 1, "minute")], clock=lambda: FROZEN_NOW)
    url = app_url("Limited", rate_limiter=limiter, pages=True)
    retry = 60 - int(FROZEN_NOW) % 60
    async with browser_page("rate-limited") as (page, seen):
        await open_playground(page, url)
        assert await ask_to_the_end(page, "first", transport="sse") == "done"
        assert await page.input_value("#prompt") == ""  # sent: the box is cleared
        headers = await header_rows(page)
        assert headers["x-ratelimit-remaining-requests"] == "0" and "RateLimit-Policy" in headers

        assert await ask_to_the_end(page, "second", transport="sse") == "error"
        error = await page.text_content("#error")
        assert error.startswith(f"rate limited, retry in {retry} s")
        assert error.count("retry in") == 1  # said once, not the server's sentence again
        assert await page.input_value("#prompt") == "second"  # not answered: the text comes back
        assert await page.is_visible("#error")
        headers = await header_rows(page)
        assert headers["Retry-After"] == str(retry) and "HTTP 429" in await page.text_content("#headers-note")

        assert await ask_to_the_end(page, "third", transport="ws") == "error"
        assert (await page.text_content("#error")).startswith(f"rate limited, retry in {retry} s")
        assert await page.text_content("#answer") == ""
        no_page_errors(seen)


@bounded(60)
async def test_on_a_phone_the_chat_comes_before_the_settings(app_url):
    url = app_url("Phone", pages=True)
    async with browser_page("phone") as (page, seen):
        await page.set_viewport_size({"width": 390, "height": 844})
        await open_playground(page, url)
        chat = await page.locator('section[aria-labelledby="chat-title"]').bounding_box()
        settings = await page.locator('section[aria-labelledby="settings-title"]').bounding_box()
        assert chat["y"] < settings["y"]
        no_page_errors(seen)


def gated_assistant(backend: Backend, gate: asyncio.Event) -> Agent:
    """The default assistant, whose calculator waits for ``gate`` before it answers."""
    (assistant,) = default_agents(backend)

    @tool(name="calculator", description=builtin_calculator.description)
    async def waiting_calculator(expression: str) -> float:
        await asyncio.wait_for(gate.wait(), 20)
        return builtin_calculator(expression)

    tools = [waiting_calculator, *[t for t in assistant.tools if t.name != "calculator"]]
    return Agent("assistant", backend, tools=tools, instructions=assistant.instructions,
                 description=assistant.description)


@pytest.mark.parametrize("transport", ["ws", "sse"])
@bounded(60)
async def test_agent_iterations_show_as_they_happen(app_url, transport):
    gate = asyncio.Event()
    backend = DemoBackend(delay=0.02)
    limiter = RateLimiter([Limit("request", 100, "minute"), Limit("token", 100_000, "hour")])
    url = app_url("Agents", model=backend, agents=[gated_assistant(backend, gate)], rate_limiter=limiter, pages=True)
    async with browser_page(f"agent-{transport}") as (page, seen):
        await open_playground(page, url)
        await page.select_option("#target", "agent:assistant")
        await page.wait_for_function(
            "() => document.getElementById('target-info').textContent.includes('calculator')")
        await ask(page, "What is 12*(3+4)?", transport=transport, target="agent:assistant")
        # The model's step and the tool's start are on screen while the tool still runs.
        running = page.locator("#iterations > li.step.tool.running")
        await running.wait_for()
        assert "running" in await running.inner_text() and "12*(3+4)" in await running.inner_text()
        assert await page.locator("#iterations > li.step.model").count() == 1
        assert await page.get_attribute("#status", "data-state") == "streaming"
        assert await page.is_enabled("#stop")
        gate.set()
        assert await wait_state(page, "done", "error") == "done"
        assert await page.text_content("#answer") == "12*(3+4) = 84."
        steps = page.locator("#iterations > li")
        kinds = [await steps.nth(i).get_attribute("class") for i in range(await steps.count())]
        assert kinds == ["step model", "step tool", "step model"]
        tool_text = await steps.nth(1).inner_text()
        assert "calculator" in tool_text and "84" in tool_text and "done in" in tool_text
        assert "asks for calculator" in await steps.nth(0).inner_text()
        assert "tokens" in await page.text_content("#usage")
        if transport == "sse":
            headers = await header_rows(page)
            assert headers["x-ratelimit-limit-tokens"] == "100000"
            assert headers["RateLimit"].startswith('"100-per-60";r=99;')
            await page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
        no_page_errors(seen)


@bounded(60)
async def test_markup_in_prompts_and_names_is_shown_as_text(app_url):
    hostile = "<img src=x onerror=alert(1)>"
    backend = DemoBackend(delay=0)
    agents = {"<img src=y onerror=alert(2)>": Agent("x", backend)}
    url = app_url("<b>bold</b>", model=backend, agents=agents, pages=True)
    async with browser_page("escaping") as (page, seen):
        await open_playground(page, url)
        assert "<b>bold</b>" in await page.text_content("#app-name")
        options = await page.eval_on_selector_all("#target option", "os => os.map(o => o.textContent)")
        assert "agent: <img src=y onerror=alert(2)>" in options
        for transport in ("ws", "sse"):
            assert await ask_to_the_end(page, hostile, transport=transport) == "done"
            assert hostile in await page.text_content("#answer")
        assert await ask_to_the_end(page, hostile, transport="ws", target="agent:<img src=y onerror=alert(2)>") == "done"
        assert hostile in await page.text_content("#answer")
        assert await page.locator("img").count() == 0
        # Markdown is rendered as elements of its own (a paragraph here), the markup only as text.
        tags = await page.eval_on_selector_all("#answer *", "nodes => nodes.map(n => n.tagName)")
        assert set(tags) <= {"P"}, tags
        await asyncio.sleep(0.2)  # an onerror handler would have fired by now
        # Defence in depth: the CSP's Trusted Types refuse HTML sinks on this page altogether.
        refused = await page.evaluate("""() => {
            try { document.body.insertAdjacentHTML('beforeend', '<b>x</b>'); return 'allowed'; }
            catch (exc) { return exc.name; } }""")
        assert refused == "TypeError"
        no_page_errors(seen)


@bounded(60)
async def test_the_playground_works_under_a_prefix(app_url):
    backend = DemoBackend(delay=0)
    url = app_url("Mounted", model=backend, agents=default_agents(backend), pages="/ai")
    async with browser_page("prefix") as (page, seen):
        await open_playground(page, url, "/ai")
        for transport in ("ws", "sse"):
            assert await ask_to_the_end(page, "hello there", transport=transport) == "done"
            assert 'You said: "hello there"' in await page.text_content("#answer")
        assert await ask_to_the_end(page, "What is 2+3?", transport="sse", target="agent:assistant") == "done"
        assert await page.text_content("#answer") == "2+3 = 5."
        no_page_errors(seen)


@bounded(60)
async def test_backend_errors_are_shown_plainly(app_url):
    backend = ScriptedBackend(["some ", "text "], failure="error", fail_after=1)
    url = app_url("Broken", model=backend, pages=True)
    async with browser_page("backend-error") as (page, seen):
        await open_playground(page, url)
        for transport in ("ws", "sse"):
            assert await ask_to_the_end(page, "hi", transport=transport) == "error"
            error = await page.text_content("#error")
            assert "backend_error" in error and "upstream exploded" in error, error
        await page.fill("#prompt", "   ")
        await page.click("#send")
        assert "Type a prompt first." in await page.text_content("#prompt-error")
        no_page_errors(seen)


class _CraftedStream(tornado.web.RequestHandler):
    """Events in awkward framing, written in pieces; ``complete`` only once the gate opens."""

    PIECES = [
        b"\xef\xbb\xbf: a byte order mark, then a comment\r\n\r\n",
        b"event: chunk\r",                                   # CR, then LF in the next read
        b"\ndata: {\"content\":",                           # data split across reads
        b" \"Hel\"}\r\n\r\n",
        b"id: 7\nretry: 100\nevent: chunk\ndata:{\"content\":\"lo\"}\n\n",  # no space after colon
        b"event: chunk\n\n",                                 # no data: not dispatched
        b"event: ping\ndata: {}\n\n",                        # unknown event: ignored
        b"event: chunk\rdata: {\"content\":\rdata: \" w\xc3",  # CR lines, multi-line data, split UTF-8
        b"\xa9rld\"}\r\r",
        b": keep-alive\n\nevent: chunk\ndata: {\"content\": \"!\"}\n\n",
    ]

    def initialize(self, gate: asyncio.Event) -> None:
        self.gate = gate

    async def post(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        result = {"prompt": "p", "response": "Final", "model": {"provider": "t", "name": "t"},
                  "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
        try:
            for piece in self.PIECES:
                self.write(piece)
                await self.flush()
                await asyncio.sleep(0.03)
            await asyncio.wait_for(self.gate.wait(), 20)
            self.write("event: complete\ndata: " + json.dumps({"result": result}) + "\n\n")
        except StreamClosedError:
            pass


@bounded(60)
async def test_the_sse_parser_handles_any_framing(make_app, serve):
    gate = asyncio.Event()
    app = make_app("Framing")
    web_app = tornado.web.Application(
        [tornado.web.url(r"/model/stream", _CraftedStream, {"gate": gate})] + page_specs(app))
    url = serve(tornado.httpserver.HTTPServer(web_app))
    async with browser_page("sse-framing") as (page, seen):
        await open_playground(page, url)
        await ask(page, "anything", transport="sse")
        await page.wait_for_function(
            "() => document.getElementById('answer').textContent === 'Hello w\u00e9rld!'")
        assert await page.get_attribute("#status", "data-state") == "streaming"
        gate.set()
        assert await wait_state(page, "done", "error") == "done"
        assert await page.text_content("#answer") == "Final"
        assert "1 prompt + 2 completion = 3 tokens" in await page.text_content("#usage")
        no_page_errors(seen)

"""The playground as a chat, in a real browser: Markdown, safety, Stop, limits, conversation.

Playwright drives Debian's Chromium against a real server in the test's IOLoop (see
``tests/support/browser.py`` for the helpers and the CI rule: under ``CI=true`` these never skip).
"""
from __future__ import annotations

import pathlib
from typing import Any

from monoai_tornado import DemoBackend
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.browser import (BROWSER, MID_STREAM, ask, ask_to_the_end, bounded, browser_page, no_page_errors,
                                   open_playground, wait_state, wait_until)

pytestmark = BROWSER

DOCS = pathlib.Path(__file__).parent.parent / "docs"
FROZEN_NOW = 1_700_000_030.0

MARKDOWN_ANSWER = [
    "Here is **the plan**:\n\n",
    "1. read `config.toml`\n2. run it\n\n",
    "```python\nprint('hello')\n", "print(1 < 2)\n```\n\n",
    "| name | value |\n|---|---|\n| a | 1 |\n| b | 2 |\n",
]


async def limit_rows(page: Any) -> list[str]:
    return await page.eval_on_selector_all(".limit .limit-text", "nodes => nodes.map(n => n.textContent)")


@bounded(60)
async def test_markdown_answers_render_with_a_copyable_code_block(app_url: Any) -> None:
    backend = ScriptedBackend(MARKDOWN_ANSWER, delay=0.01)
    url = app_url("Markdown", model=backend, pages=True)
    async with browser_page("chat-markdown") as (page, seen):
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        await open_playground(page, url)
        assert await ask_to_the_end(page, "show me markdown", transport="ws") == "done"
        assert await page.text_content("#answer strong") == "the plan"
        assert await page.eval_on_selector_all("#answer ol > li", "n => n.map(x => x.textContent)") == [
            "read config.toml", "run it"]
        assert await page.text_content("#answer li code") == "config.toml"
        code = "print('hello')\nprint(1 < 2)"
        assert await page.text_content("#answer .codeblock pre code") == code
        assert await page.text_content("#answer .codeblock .lang") == "python"
        cells = await page.eval_on_selector_all("#answer table td", "n => n.map(x => x.textContent)")
        assert cells == ["a", "1", "b", "2"]
        await page.click("#answer .codeblock .copy")
        await page.wait_for_selector("#answer .codeblock .copy[data-copied=true]")
        assert await page.evaluate("() => navigator.clipboard.readText()") == code
        no_page_errors(seen)


@bounded(60)
async def test_html_in_a_model_answer_never_runs(app_url: Any) -> None:
    hostile = [
        "<script>window.pwned = 1</script>\n\n",
        "Look: <img src=x onerror=\"window.pwned = 2\"> and ",
        "[a link](javascript:window.pwned=3) and <b onmouseover=\"window.pwned=4\">bold</b>\n",
    ]
    backend = ScriptedBackend(hostile, delay=0.01)
    url = app_url("Hostile", model=backend, pages=True)
    async with browser_page("chat-hostile") as (page, seen):
        await open_playground(page, url)
        for transport in ("ws", "sse"):
            assert await ask_to_the_end(page, "be evil", transport=transport) == "done"
            text = await page.text_content("#answer")
            assert "<script>window.pwned = 1</script>" in text and "<img src=x" in text
        assert await page.locator("#conversation script, #conversation img, #conversation b").count() == 0
        hrefs = await page.eval_on_selector_all("#conversation a", "n => n.map(a => a.getAttribute('href'))")
        assert not [h for h in hrefs if h and h.lower().startswith("javascript")], hrefs
        await page.hover("#answer")
        assert await page.evaluate("() => window.pwned") is None
        no_page_errors(seen)


@bounded(60)
async def test_stop_keeps_the_partial_answer_and_shows_its_usage(app_url: Any) -> None:
    backend = ScriptedBackend([f"piece{i} " for i in range(200)], delay=0.05)
    url = app_url("Stop", model=backend, pages=True)
    async with browser_page("chat-stop") as (page, seen):
        await open_playground(page, url)
        for number, transport in enumerate(("ws", "sse"), start=1):
            await ask(page, "go on", transport=transport)
            await page.wait_for_function(MID_STREAM)
            await page.click("#stop")
            assert await wait_state(page, "cancelled", "done", "error") == "cancelled"
            shown = await page.text_content("#answer")
            assert shown.startswith("piece0") and "piece199" not in shown
            usage = await page.text_content("#usage")
            assert "tokens" in usage and "completion" in usage, usage
            await wait_until(lambda: backend.cancelled == number)  # noqa: B023 (called in this turn)
        # Both stopped turns stay in the conversation.
        assert await page.locator("#conversation .turn").count() == 2
        no_page_errors(seen)


@bounded(60)
async def test_limits_show_as_bars_that_go_down_then_the_429(app_url: Any) -> None:
    limiter = RateLimiter([Limit("request", 3, "minute"), Limit("token", 100_000, "hour")],
                          clock=lambda: FROZEN_NOW)
    url = app_url("Limits", rate_limiter=limiter, pages=True)
    resets = 60 - int(FROZEN_NOW) % 60
    async with browser_page("chat-limits") as (page, seen):
        await open_playground(page, url)
        assert await ask_to_the_end(page, "one", transport="sse") == "done"
        rows = await limit_rows(page)
        assert rows[0] == f"2 of 3 requests left this minute, resets in {resets} s", rows
        assert rows[1].endswith("tokens left this hour, resets in " + str(3600 - int(FROZEN_NOW) % 3600) + " s")
        first = int(await page.get_attribute(".limit .bar", "aria-valuenow"))
        # Over WebSocket the page asks /rate-limit/stats for the user it names.
        await page.fill("#user-id", "alice")
        assert await ask_to_the_end(page, "two", transport="ws") == "done"
        await page.wait_for_function(
            "() => (document.querySelector('.limit .limit-text') || {}).textContent"
            f" === '2 of 3 requests left this minute, resets in {resets} s'")
        await page.fill("#user-id", "")
        assert await ask_to_the_end(page, "three", transport="sse") == "done"
        assert (await limit_rows(page))[0].startswith("1 of 3 requests left")
        assert int(await page.get_attribute(".limit .bar", "aria-valuenow")) < first
        assert await ask_to_the_end(page, "four", transport="sse") == "done"
        assert await ask_to_the_end(page, "five", transport="sse") == "error"
        assert (await page.text_content("#error")).startswith(f"rate limited, retry in {resets} s")
        assert (await limit_rows(page))[0].startswith("0 of 3 requests left")
        assert await page.get_attribute(".limit .bar", "class") == "bar empty"
        assert await page.get_attribute("#status", "data-state") == "error"
        no_page_errors(seen)


@bounded(90)
async def test_a_conversation_sends_its_whole_history(app_url: Any) -> None:
    url = app_url("Chat", model=DemoBackend(delay=0.005), pages=True)
    async with browser_page("chat-conversation") as (page, seen):
        await open_playground(page, url)
        assert await page.input_value("#transport") == "chat"  # the default where /v1 is served
        await page.fill("#system", "You are terse.")
        for prompt in ("first question", "second question", "third question"):
            assert await ask_to_the_end(page, prompt, transport="chat") == "done"
            assert f'You said: "{prompt}"' in await page.text_content("#answer")
            assert "completion" in await page.text_content("#usage")
        # The demo model says what it saw: the system prompt and every earlier turn came along.
        third = await page.text_content("#answer")
        assert "I saw 6 messages (1 system, 3 user, 2 assistant) in 3 user turns" in third, third
        assert await page.locator("#conversation .turn").count() == 3

        await page.click("#new-chat")
        assert await page.locator("#conversation .turn").count() == 0
        assert await ask_to_the_end(page, "fresh start", transport="chat") == "done"
        assert "I saw 2 messages (1 system, 1 user) in 1 user turn" in await page.text_content("#answer")

        await page.fill("#max-tokens", "3")
        assert await ask_to_the_end(page, "a long answer please", transport="chat") == "done"
        assert "length" in await page.text_content("#finish")
        assert "3 completion" in await page.text_content("#usage")
        no_page_errors(seen)


@bounded(90)
async def test_a_key_in_the_page_is_used_on_every_transport(app_url: Any, tmp_path: Any) -> None:
    from monoai_tornado.keys.file_store import FileKeyStore
    from monoai_tornado.keys.records import new_key

    store = FileKeyStore(tmp_path / "keys.json")
    secret, record = new_key("alice", limits=["5/hour"])
    await store.add(record)
    url = app_url("Keys", keys=store, require_api_key=True, pages=True)
    async with browser_page("chat-key") as (page, seen):
        await open_playground(page, url)
        assert await ask_to_the_end(page, "no key yet", transport="ws") == "error"
        assert "API key" in await page.text_content("#error")

        await page.fill("#api-key", secret)
        for transport in ("ws", "sse", "chat"):
            assert await ask_to_the_end(page, f"with a key over {transport}", transport=transport) == "done", await page.text_content("#error")
        # Three answers billed to alice, whose key allows five an hour.
        assert (await limit_rows(page))[0].startswith("2 of 5 requests left this hour")
        assert await page.evaluate("() => sessionStorage.getItem('monoai-playground-api-key')") == secret
        assert await page.evaluate("() => localStorage.length") == 0
        await page.reload()
        await page.wait_for_selector("#send:not([disabled])")
        assert await page.input_value("#api-key") == secret  # kept for this tab only
        no_page_errors(seen)


@bounded(60)
async def test_money_left_shows_as_a_bar_under_a_spend_limit(app_url: Any) -> None:
    from monoai_tornado.money import Prices
    from monoai_tornado.ratelimit.limits import parse_spend_limit

    limiter = RateLimiter([Limit("request", 30, "minute"), parse_spend_limit("0.01/day")], clock=lambda: FROZEN_NOW)
    url = app_url("Money", rate_limiter=limiter, prices=Prices.per_million(10, 30), pages=True)
    async with browser_page("chat-money") as (page, seen):
        await open_playground(page, url)
        await page.fill("#user-id", "payer")
        assert await ask_to_the_end(page, "one", transport="sse") == "done"
        await page.wait_for_function("() => document.querySelectorAll('.limit .limit-text').length === 2")
        money = (await limit_rows(page))[1]
        assert money.startswith("$0.00") and money.endswith(
            "of $0.01 left today, resets in " + str(86400 - int(FROZEN_NOW) % 86400) + " s"), money
        assert "$0.00" in (await page.text_content(".turn .usage") or "")  # the run's cost beside its tokens
        assert await ask_to_the_end(page, "two", transport="ws") == "done"
        await page.wait_for_function(
            f"() => (document.querySelectorAll('.limit .limit-text')[1] || {{}}).textContent !== {money!r}")
        left = (await limit_rows(page))[1]
        assert float(left.split()[0][1:]) < float(money.split()[0][1:])  # less money left after the second run
        no_page_errors(seen)

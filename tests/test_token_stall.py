"""A big prompt never stalls the server: a full request limit refuses it before anything is
counted, and a prompt that is counted is counted off the event loop (other requests go on).

The counter here wraps the session's real one: it refuses to count big prompts (to prove none
was counted), or waits for the test before counting (to prove the loop answers meanwhile).
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterable

import pytest

from monoai_tornado.prompt_tokens import upper_bound
from monoai_tornado.ratelimit import Limit, RateLimiter
from monoai_tornado.usage import TokenCounter
from tests.support.http import json_of

BIG = "x" + " " * 200_000


class GatedCounter(TokenCounter):
    """The real counter, except that a big prompt waits for ``gate`` (or fails without it)."""

    def __init__(self, real: TokenCounter, gate: threading.Event | None) -> None:
        super().__init__(encoding=real.encoding)
        self.gate = gate
        self.big_counts = 0
        self.counting = threading.Event()

    def count_messages(self, messages: Iterable[dict[str, Any]]) -> int:
        messages = list(messages)
        if upper_bound(messages) > 100_000:
            self.big_counts += 1
            if self.gate is None:
                raise AssertionError("a big prompt was counted")
            self.counting.set()
            assert self.gate.wait(30)
        return super().count_messages(messages)


def test_the_bound_is_never_below_the_count(counter: TokenCounter) -> None:
    for text in ("", "hello", " " * 1000, "é€😀" * 50, "<|endoftext|>" * 3, BIG[:5000]):
        messages = [{"role": "system", "content": "s"}, {"role": "user", "content": text, "name": "n"}]
        assert counter.count_messages(messages) <= upper_bound(messages)


async def test_a_full_request_limit_refuses_a_big_prompt_uncounted(app_url, fetch, counter) -> None:
    gated = GatedCounter(counter, gate=None)
    url = app_url(rate_limiter=RateLimiter([Limit("request", 1, "minute"), Limit("token", 10**9, "minute")]),
                  token_counter=gated)
    first = await fetch(url + "/model", "POST", {"prompt": "hi"})
    assert first.code == 200
    for _ in range(3):
        refused = await fetch(url + "/model", "POST", {"prompt": BIG})
        assert refused.code == 429 and json_of(refused)["code"] == "rate_limited"
    assert gated.big_counts == 0


@pytest.mark.parametrize("limited", [True, False])
async def test_health_answers_while_a_big_prompt_is_counted(app_url, fetch, counter, limited) -> None:
    gate = threading.Event()
    gated = GatedCounter(counter, gate)
    limiter = RateLimiter([Limit("token", 10**9, "minute")]) if limited else None
    url = app_url(rate_limiter=limiter, token_counter=gated)
    prompt = asyncio.ensure_future(fetch(url + "/model", "POST", {"prompt": BIG}, request_timeout=60))
    assert await asyncio.get_running_loop().run_in_executor(None, gated.counting.wait, 30)
    health = await fetch(url + "/health")  # the count is still waiting: the loop is free
    assert health.code == 200 and not prompt.done()
    gate.set()
    answer = await prompt
    assert answer.code == 200
    assert json_of(answer)["usage"]["prompt_tokens"] == counter.count_messages([{"role": "user", "content": BIG}])


async def test_a_big_prompt_over_a_token_limit_is_refused_after_an_exact_count(app_url, fetch, counter) -> None:
    exact = counter.count_messages([{"role": "user", "content": BIG}])
    gate = threading.Event()
    gate.set()
    gated = GatedCounter(counter, gate)
    # The bound (200 kB) does not fit, the exact count does: admitted.
    url = app_url(rate_limiter=RateLimiter([Limit("token", exact + 100, "minute")]), token_counter=gated)
    answer = await fetch(url + "/model", "POST", {"prompt": BIG, "max_tokens": 5})
    assert answer.code == 200 and gated.big_counts == 1
    assert json_of(answer)["usage"]["prompt_tokens"] == exact
    again = await fetch(url + "/model", "POST", {"prompt": BIG, "max_tokens": 5})
    assert again.code == 429 and json_of(again)["code"] == "rate_limited"

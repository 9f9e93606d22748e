"""Statements of API.md's dialect sections (Anthropic Messages, Responses) checked against the
demo model in-process, through the real ``anthropic`` and ``openai`` SDKs."""
from __future__ import annotations

from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

USER = [{"role": "user", "content": "hi"}]


def sdk(url: str) -> Any:
    return anthropic.AsyncAnthropic(base_url=url, api_key="any", max_retries=0, timeout=20)


async def test_an_answer_cut_by_a_stop_sequence_says_stop_sequence_and_which(app_url):
    client = sdk(app_url())
    message = await client.messages.create(model="monoai-demo", max_tokens=100, messages=USER,
                                           stop_sequences=["nothing like it", "real LLM"])
    assert message.content[0].text == "[demo model, not a "
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "real LLM")
    async with client.messages.stream(model="monoai-demo", max_tokens=100, messages=USER,
                                      stop_sequences=["real LLM"]) as stream:
        final = await stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "real LLM")


async def test_a_stop_sequence_not_met_ends_the_turn(app_url):
    message = await sdk(app_url()).messages.create(model="monoai-demo", max_tokens=100, messages=USER,
                                                   stop_sequences=["never said"])
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)

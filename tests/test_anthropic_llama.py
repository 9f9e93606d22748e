"""The Anthropic Messages front in front of a real model server (llama.cpp running SmolLM2, the
``llama`` marker; the server and its fixtures are test_llama_real's): a streamed message through
the official ``anthropic`` SDK, token by token."""
from __future__ import annotations

import pytest

from tests.test_llama_real import llama, ours  # noqa: F401 (fixtures)

anthropic = pytest.importorskip("anthropic")

pytestmark = [pytest.mark.llama, pytest.mark.process, pytest.mark.slow]


async def test_a_streamed_message_through_the_anthropic_sdk(ours):  # noqa: F811
    base = ours("--temperature", "0")
    sdk = anthropic.AsyncAnthropic(base_url=base, api_key="unused", max_retries=0, timeout=120)
    async with sdk.messages.stream(model="smollm2", max_tokens=24, system="Answer in a few words.",
                                   messages=[{"role": "user", "content": "Name three colours."}]) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(texts) > 3 and "".join(texts) == final.content[0].text != ""  # token by token
    assert final.stop_reason in ("end_turn", "max_tokens") and final.model == "smollm2"
    assert final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 24
    counted = await sdk.messages.count_tokens(model="smollm2", system="Answer in a few words.",
                                              messages=[{"role": "user", "content": "Name three colours."}])
    assert counted.input_tokens > 0

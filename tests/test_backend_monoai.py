"""MonoAI-style objects served through the adapters: sync and async, threads, ordering, errors."""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest

from monoai_tornado.agents import Agent, MonoAIAgentAdapter, NativeAgent, adapt_agent
from monoai_tornado.backends.base import BackendEvent, ReportedUsage, TextDelta
from monoai_tornado.backends.demo import DemoBackend
from monoai_tornado.backends.monoai_adapter import MonoAIModelBackend, adapt_model, prompt_of
from monoai_tornado.calls import UsageMeter, call_model
from monoai_tornado.errors import BackendError, BackendTimeout
from monoai_tornado.usage import TokenCounter
from tests.support.backends_for_tests import RecordingEvents as Recorder
from tests.support.monoai_objects import AsyncAgent, AsyncModel, PlainModel, SyncAgent, SyncModel, words


async def collect(backend: Any, prompt: str = "hi there") -> list[BackendEvent]:
    async with contextlib.aclosing(backend.stream([{"role": "user", "content": prompt}])) as stream:
        return [event async for event in stream]


async def no_new_tasks(before: set[asyncio.Task[Any]], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while {t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()}:
        assert time.monotonic() < deadline, "tasks left pending"
        await asyncio.sleep(0.01)


async def test_sync_model_streams_from_its_thread_in_order_with_its_usage() -> None:
    model = SyncModel(usage={"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10})
    backend = adapt_model(model)
    events = await collect(backend, "hello big world")
    assert events == [*(TextDelta(w) for w in words("echo: hello big world")), ReportedUsage(4, 6)]
    assert backend.describe() == {"provider": "stand-in", "name": "sync-1"}
    assert threading.current_thread().name not in model.threads  # ask() ran in a worker thread


async def test_async_model_streams_in_the_loop() -> None:
    events = await collect(adapt_model(AsyncModel()), "abc")
    assert events == [*(TextDelta(w) for w in words("async echo: abc")), ReportedUsage(5, 9)]


async def test_first_chunk_arrives_while_the_sync_call_is_still_running() -> None:
    gate = threading.Event()
    backend = adapt_model(SyncModel(gate=gate))
    async with contextlib.aclosing(backend.stream([{"role": "user", "content": "x y"}])) as stream:
        first = await asyncio.wait_for(stream.__anext__(), 5)  # ask() is blocked on the gate meanwhile
        gate.set()
        rest = [event async for event in stream]
    assert [first, *rest] == [TextDelta(w) for w in words("echo: x y")]


async def test_a_model_that_does_not_stream_gives_its_whole_answer_and_an_estimate(counter: TokenCounter) -> None:
    backend = adapt_model(PlainModel())
    assert backend.describe() == {"provider": "monoai", "name": "PlainModel"}
    outcome = await call_model(backend, [{"role": "user", "content": "q"}], meter=UsageMeter(counter),
                               on_text=Recorder().on_text)
    assert outcome.text == "plain: q"
    assert outcome.usage.estimated and outcome.usage.completion_tokens == counter.count("plain: q")


@pytest.mark.parametrize("model_class", [SyncModel, AsyncModel])
async def test_concurrent_requests_on_one_object_never_mix_chunks(model_class: Any, counter: TokenCounter) -> None:
    model = model_class(delay=0.002)
    backend = adapt_model(model)
    prefix = "echo" if model_class is SyncModel else "async echo"

    async def one(i: int) -> tuple[list[str], str]:
        recorder = Recorder()
        outcome = await call_model(backend, [{"role": "user", "content": f"user {i} says hi"}],
                                   meter=UsageMeter(counter), on_text=recorder.on_text)
        return recorder.texts, outcome.text

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(6))), 20)
    for i, (texts, text) in enumerate(results):
        assert texts == words(f"{prefix}: user {i} says hi") and text == "".join(texts)
    assert model.max_active == 1  # serialized on the object


async def test_two_adapters_of_one_object_share_its_lock() -> None:
    model = SyncModel(delay=0.005)
    first, second = MonoAIModelBackend(model), MonoAIModelBackend(model)
    a, b = await asyncio.gather(collect(first, "one two"), collect(second, "three four"))
    assert a == [TextDelta(w) for w in words("echo: one two")]
    assert b == [TextDelta(w) for w in words("echo: three four")]
    assert model.max_active == 1


@pytest.mark.parametrize("model", [SyncModel(fail="quota exceeded for project"), AsyncModel(fail="bad prompt")])
async def test_an_exception_inside_ask_is_a_backend_error_with_its_message(model: Any) -> None:
    with pytest.raises(BackendError) as caught:
        await collect(adapt_model(model))
    assert type(caught.value) is BackendError and caught.value.status == 502
    assert str(model.fail) in str(caught.value) and repr(model.model) in str(caught.value)


async def test_the_ioloop_keeps_running_during_a_slow_sync_ask() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    try:
        events = await collect(adapt_model(SyncModel(delay=0.15)), "slow one")  # about 0.45 s in a thread
    finally:
        task.cancel()
    assert len(events) == 3 and ticks >= 10


async def cancel_at_the_first_chunk(backend: Any, prompt: str, counter: TokenCounter) -> None:
    """Call ``backend`` with ``prompt`` and cancel the call as soon as its first chunk arrives."""
    seen = asyncio.Event()

    async def on_first(text: str) -> None:
        seen.set()

    task = asyncio.ensure_future(call_model(backend, [{"role": "user", "content": prompt}],
                                            meter=UsageMeter(counter), on_text=on_first))
    await asyncio.wait_for(seen.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_a_sync_call_keeps_the_next_caller_clear_of_its_late_chunks(counter: TokenCounter) -> None:
    model = SyncModel(delay=0.05)
    backend = adapt_model(model)
    before = asyncio.all_tasks()
    await cancel_at_the_first_chunk(backend, "a b c d e f", counter)
    await no_new_tasks(before, timeout=0.1)  # the thread runs on, but no task waits for it
    events = await asyncio.wait_for(collect(backend, "next"), 5)  # waits for the thread, then runs alone
    assert events == [TextDelta(w) for w in words("echo: next")]
    assert model.calls == 2 and model.max_active == 1


async def test_cancelling_an_async_call_cancels_the_objects_coroutine() -> None:
    model = AsyncModel(delay=0.05)
    backend = adapt_model(model)
    before = asyncio.all_tasks()
    stream = backend.stream([{"role": "user", "content": "a b c d"}])
    task = asyncio.ensure_future(_drain_slowly(stream))
    await asyncio.sleep(0.08)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert model.cancelled == 1
    await no_new_tasks(before, timeout=0.1)
    assert await collect(backend, "again") == [*(TextDelta(w) for w in words("async echo: again")),
                                                ReportedUsage(5, 9)]


async def test_a_cancelled_sync_call_stops_at_its_next_chunk(counter: TokenCounter) -> None:
    model = SyncModel(delay=0.05)
    await cancel_at_the_first_chunk(adapt_model(model), " ".join(f"w{i}" for i in range(40)), counter)
    for _ in range(500):  # bounded: the thread ends at its next callback, not after 41 chunks
        if model.active == 0:
            break
        await asyncio.sleep(0.01)
    assert model.active == 0 and model.pieces < 10


class StreamingModel:
    """Shaped like MonoAI 0.0.25's Model: an async ask_stream generator beside ask()."""

    provider, model = "stand-in", "stream-1"

    def __init__(self, *, delay: float = 0.0, usage: dict[str, int] | None = None) -> None:
        self.delay, self.usage = delay, usage
        self.active = self.max_active = self.closed = self.finished = 0

    def enable_streaming(self, callback: Any) -> None:
        raise AssertionError("ask_stream is preferred")

    def ask(self, prompt: str) -> dict[str, Any]:
        raise AssertionError("ask_stream is preferred")

    async def ask_stream(self, prompt: str) -> Any:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            yield {"provider": self.provider, "model": self.model}
            for piece in words(f"streamed: {prompt}"):
                await asyncio.sleep(self.delay)
                yield {"delta": piece}
            if self.usage is not None:
                yield {"delta": None, "usage": self.usage}
            self.finished += 1
        finally:
            self.active -= 1
            self.closed += 1


async def test_ask_stream_is_preferred_and_streams_concurrent_calls_unmixed() -> None:
    model = StreamingModel(delay=0.01, usage={"prompt_tokens": 3, "completion_tokens": 4})
    backend = adapt_model(model)
    results = await asyncio.gather(*(collect(backend, f"user {i}") for i in range(5)))
    for i, events in enumerate(results):
        assert events == [*(TextDelta(w) for w in words(f"streamed: user {i}")), ReportedUsage(3, 4)]
    assert model.max_active > 1 and model.finished == 5  # no lock: the object keeps no callback


async def test_cancelling_an_ask_stream_closes_the_objects_stream() -> None:
    model = StreamingModel(delay=0.05)
    stream = adapt_model(model).stream([{"role": "user", "content": "a b c d e f g h"}])
    task = asyncio.ensure_future(_drain_slowly(stream))
    await asyncio.sleep(0.08)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert model.closed == 1 and model.finished == 0 and model.active == 0


async def test_an_ask_stream_that_fails_is_a_backend_error() -> None:
    class Broken(StreamingModel):
        async def ask_stream(self, prompt: str) -> Any:
            yield {"delta": "half"}
            raise RuntimeError("upstream went away")

    with pytest.raises(BackendError, match="upstream went away"):
        await collect(adapt_model(Broken()))


async def _drain_slowly(stream: Any) -> None:
    async with contextlib.aclosing(stream):
        async for _ in stream:
            pass


@pytest.mark.slow  # takes a second or more
async def test_a_timeout_gives_backend_timeout() -> None:
    model = SyncModel(delay=0.3)
    with pytest.raises(BackendTimeout, match="did not answer within 0.2 s"):
        await collect(MonoAIModelBackend(model, timeout=0.2), "a b c")
    # The thread runs on and keeps the object; the next call waits for it, then runs alone.
    assert await collect(MonoAIModelBackend(model), "z") == [TextDelta(w) for w in words("echo: z")]


def test_adapt_model_passes_backends_through_and_refuses_other_objects() -> None:
    demo = DemoBackend()
    assert adapt_model(demo) is demo
    assert isinstance(adapt_model(SyncModel()), MonoAIModelBackend)
    with pytest.raises(TypeError, match=r"ask\(prompt\)"):
        adapt_model(object())


def test_adapt_agent_passes_native_agents_through_and_wraps_run_objects() -> None:
    native = Agent("native", DemoBackend())
    assert adapt_agent(native) is native

    class Marked(NativeAgent):  # an agent of the user's own, with the native run() signature
        name = "marked"

        async def run(self, prompt: str, *, meter: Any, events: Any) -> dict[str, Any]:
            return {}

    marked = Marked()
    assert adapt_agent(marked) is marked
    wrapped = adapt_agent(SyncAgent())
    assert isinstance(wrapped, MonoAIAgentAdapter) and wrapped.name == "researcher"
    assert adapt_agent(wrapped) is wrapped
    renamed = adapt_agent(AsyncAgent(), name="helper")
    assert renamed.name == "helper" and renamed.tool_summaries() == []
    assert renamed.describe() == {"name": "helper", "description": "An agent with async run() and no streaming; "
                                  "its docstring describes it.", "tools": []}
    with pytest.raises(TypeError, match="has no name"):
        adapt_agent(AsyncAgent())
    with pytest.raises(TypeError, match=r"run\(prompt\)"):
        adapt_agent(PlainModel())


async def test_agent_run_streams_passes_iterations_and_uses_reported_usage(counter: TokenCounter) -> None:
    agent = adapt_agent(SyncAgent(usage={"prompt_tokens": 12, "completion_tokens": 30}))
    recorder, meter = Recorder(), UsageMeter(counter)
    result = await agent.run("cats", meter=meter, events=recorder)
    assert recorder.texts == ["Thinking", "...", " done: ", "cats"]
    assert result == {"prompt": "cats", "response": "done: cats",
                      "iterations": [{"step": 1, "tool": "search", "output": "found"}],
                      "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
                      "finish_reason": "stop"}


async def test_agent_without_usage_or_streaming_is_estimated_and_sent_whole(counter: TokenCounter) -> None:
    recorder, meter = Recorder(), UsageMeter(counter)
    result = await adapt_agent(AsyncAgent(), name="a").run("dogs", meter=meter, events=recorder)
    assert recorder.texts == ["async agent: dogs"] and result["iterations"] == []
    assert result["usage"] == {"prompt_tokens": counter.count("dogs") + 6,
                               "completion_tokens": counter.count("async agent: dogs"),
                               "total_tokens": counter.count("dogs") + 6 + counter.count("async agent: dogs"),
                               "estimated": True}


async def test_agent_exception_is_a_backend_error(counter: TokenCounter) -> None:
    agent = adapt_agent(SyncAgent(fail="missing tool"))
    with pytest.raises(BackendError, match="agent 'researcher' failed: 'missing tool'"):
        await agent.run("x", meter=UsageMeter(counter), events=Recorder())


async def test_an_interrupted_agent_run_is_still_billed(counter: TokenCounter) -> None:
    agent = adapt_agent(SyncAgent(delay=0.1))
    meter, recorder = UsageMeter(counter), Recorder()
    task = asyncio.ensure_future(agent.run("a long prompt to bill", meter=meter, events=recorder))
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.texts and meter.total.prompt_tokens == counter.count("a long prompt to bill") + 6
    assert meter.total.completion_tokens == counter.count("".join(recorder.texts)) > 0
    after = Recorder()  # waits for the abandoned thread, and sees none of its chunks
    await asyncio.wait_for(agent.run("next", meter=UsageMeter(counter), events=after), 5)
    assert after.texts == ["Thinking", "...", " done: ", "next"]


def test_prompt_of_a_conversation() -> None:
    assert prompt_of([{"role": "user", "content": "hi"}]) == "hi"
    assert prompt_of([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]) \
        == "System: Be brief.\n\nUser: hi"
    assert prompt_of([{"role": "user", "content": [{"type": "text", "text": "parts"}]}]) == "parts"


async def test_an_agent_shaped_like_monoais_names_its_model_and_lists_its_tools(counter: TokenCounter) -> None:
    def lookup(term: str) -> str:
        """Look a term up.

        More details nobody lists."""
        return term

    class Loop:
        _tools = {"lookup": lookup}

    class MonoAIShapedAgent(SyncAgent):
        _model = SyncModel()  # provider "stand-in", model "sync-1"
        _loop = Loop()

    agent = adapt_agent(MonoAIShapedAgent())
    assert agent.describe()["tools"] == [{"name": "lookup", "description": "Look a term up."}]
    result = await agent.run("cats", meter=UsageMeter(counter), events=Recorder())
    assert result["model"] == {"provider": "stand-in", "name": "sync-1"}
    plain = await adapt_agent(SyncAgent()).run("cats", meter=UsageMeter(counter), events=Recorder())
    assert "model" not in plain and adapt_agent(SyncAgent()).describe()["tools"] == []

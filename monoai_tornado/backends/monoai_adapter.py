"""Serve MonoAI-style objects: anything with ``ask(prompt)`` / ``run(prompt)`` returning a dict.

MonoAI's ``Model`` and ``Agent`` (and look-alikes) answer ``{"response": ..., "usage": ...}``.
:class:`MonoAIModelBackend` makes a model a :class:`~monoai_tornado.backends.base.Backend`;
:class:`~monoai_tornado.agents.monoai_adapter.MonoAIAgentAdapter` makes an agent a native
agent with the calling machinery of this module (:func:`stream_call`). Both stream with what
the object offers, in this order:

1. an async ``ask_stream(prompt)`` (MonoAI 0.0.25's ``Model``), iterated in the loop: its
   chunks (``{"delta": text}``) flow as they come, calls on one object run concurrently, and
   a cancel closes the stream, which closes the upstream request;
2. ``enable_streaming(callback)`` and ``ask``/``run`` (MonoAI's ``Agent``): a sync call runs in
   a thread pool, so the IOLoop never waits for it; chunks the callback receives in that
   thread reach the generator in order via ``call_soon_threadsafe``. Calls on one object are
   serialized (one ``asyncio.Lock`` per object), because it keeps one callback at a time.
   After a cancel the callback raises :class:`CallCancelled` in the object's thread, which
   stops a generation that streams at its next chunk; one that does not stream (or swallows
   the exception) runs on in its thread, keeping the lock, since a thread cannot be stopped;
3. a plain ``ask``/``run``: the whole answer as one chunk (an ``async def`` one runs as a
   task in the loop, and is cancelled with its request).

>>> class Echo:
...     def enable_streaming(self, callback): self.callback = callback
...     def ask(self, prompt): return {"response": prompt}
>>> adapt_model(Echo()).describe()
{'provider': 'monoai', 'name': 'Echo'}
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import weakref
from dataclasses import dataclass
from typing import Any, AsyncGenerator, Mapping

from ..errors import ApiError, BackendError, BackendTimeout
from .base import Backend, CallOptions, EventStream, Message, ReportedUsage, TextDelta, ToolSchema, exception_of

log = logging.getLogger("monoai_tornado.backends.monoai")

#: Seconds a cancelled ``async`` call gets to wind down before the generator lets go.
CANCEL_GRACE = 1.0

_LOCKS: "weakref.WeakKeyDictionary[Any, asyncio.Lock]" = weakref.WeakKeyDictionary()


def lock_for(obj: Any) -> asyncio.Lock:
    """The lock shared by every adapter of ``obj`` (a private one if obj cannot be weakly keyed)."""
    try:
        lock = _LOCKS.get(obj)
        if lock is None:
            lock = _LOCKS[obj] = asyncio.Lock()
        return lock
    except TypeError:
        return asyncio.Lock()


class CallCancelled(Exception):
    """Raised in the object's thread by the streaming callback once its request was cancelled."""


@dataclass
class CallResult:
    """What the object's call returned, set once :func:`stream_call` has yielded every chunk."""

    value: Any = None


class _Channel:
    """The chunks of one call, from whatever thread the object calls back in, to the loop."""

    _END = object()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.open = True

    def callback(self, chunk: Any = None, *_: Any, **__: Any) -> None:
        """What the object is given by ``enable_streaming``; safe to call from any thread."""
        if not self.open:  # cancelled: stop the object's generation where it calls us
            raise CallCancelled("the request was cancelled")
        text = _text_of(chunk)
        if text:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                self.loop.call_soon_threadsafe(self.put, text)

    def put(self, item: Any) -> None:
        if self.open:
            self.queue.put_nowait(item)


async def stream_call(target: Any, method: str, prompt: str, result: CallResult, *, kind: str, name: str,
                      lock: asyncio.Lock, executor: concurrent.futures.Executor | None,
                      timeout: float | None) -> AsyncGenerator[str, None]:
    """Call ``target.<method>(prompt)`` holding ``lock``; yield its chunks, then set ``result``.

    The object's exceptions come out as API errors (BackendError, or BackendTimeout when
    ``timeout`` runs out); the consumer's own exceptions and cancellations pass through.
    """
    loop = asyncio.get_running_loop()
    channel = _Channel(loop)
    function = getattr(target, method)
    deadline = loop.time() + timeout if timeout else None

    async def within_deadline(awaitable: Any) -> Any:
        try:
            async with asyncio.timeout_at(deadline):
                return await awaitable
        except TimeoutError:
            if deadline is None or loop.time() < deadline:
                raise  # not ours: the object's own TimeoutError
            raise BackendTimeout(f"{kind} {name!r} did not answer within {timeout:g} s") from None

    await within_deadline(lock.acquire())
    work: asyncio.Future[Any] | None = None
    try:
        try:
            enable = getattr(target, "enable_streaming", None)
            if callable(enable):
                outcome = enable(channel.callback)
                if inspect.isawaitable(outcome):
                    await outcome
            if inspect.iscoroutinefunction(function):
                work = asyncio.ensure_future(function(prompt))
            else:
                work = loop.run_in_executor(executor, function, prompt)
        except Exception as exc:
            raise _failure(kind, name, method, exc) from exc
        work.add_done_callback(lambda _: channel.put(_Channel._END))
        while True:
            item = await within_deadline(channel.queue.get())
            if item is _Channel._END:
                break
            yield item
        try:
            returned = work.result()
            if inspect.isawaitable(returned):  # a plain function that returned a coroutine
                returned = await within_deadline(returned)
        except ApiError:
            raise
        except Exception as exc:
            raise _failure(kind, name, method, exc) from exc
        while not channel.queue.empty():
            yield channel.queue.get_nowait()
        result.value = returned
    finally:
        channel.open = False

        def release(done: asyncio.Future[Any] | None = None) -> None:
            error = exception_of(done) if done is not None else None
            if error is not None:
                log.debug("abandoned MonoAI call ended with %r", error)
            lock.release()

        if work is None or work.done():
            release(work)
        else:  # cancelled or timed out: the object keeps the lock until its call returns
            work.add_done_callback(release)
            if isinstance(work, asyncio.Task):
                work.cancel()
                await asyncio.wait([work], timeout=CANCEL_GRACE)


async def _native_stream(target: Any, prompt: str, *, name: str,
                         timeout: float | None) -> AsyncGenerator[str | ReportedUsage, None]:
    """Iterate ``target.ask_stream(prompt)``: its texts, then its usage if a chunk carried one.

    Closing this generator closes the object's stream (a cancel stops the generation).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout else None
    usage: ReportedUsage | None = None
    try:
        stream = target.ask_stream(prompt)
        iterator = stream.__aiter__()
    except Exception as exc:
        raise _failure("model", name, "ask_stream", exc) from exc
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    item = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError as exc:
                if deadline is None or loop.time() < deadline:  # the object's own TimeoutError
                    raise _failure("model", name, "ask_stream", exc) from exc
                raise BackendTimeout(f"model {name!r} did not answer within {timeout:g} s") from None
            except ApiError:
                raise
            except Exception as exc:
                raise _failure("model", name, "ask_stream", exc) from exc
            if isinstance(item, Mapping):
                usage = ReportedUsage.of(item.get("usage")) or usage
            text = _text_of(item)
            if text:
                yield text
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
    if usage is not None:
        yield usage


def _streams_natively(obj: Any) -> bool:
    """Whether ``obj.ask_stream`` is an async generator function (MonoAI 0.0.25's Model)."""
    return inspect.isasyncgenfunction(getattr(obj, "ask_stream", None))


def _failure(kind: str, name: str, method: str, exc: Exception) -> ApiError:
    """The API error for an exception raised by a wrapped object."""
    if isinstance(exc, ApiError):
        return exc
    log.warning("%s %r: %s() raised", kind, name, method, exc_info=exc)
    return BackendError(f"{kind} {name!r} failed: {str(exc) or type(exc).__name__}")


class MonoAIModelBackend(Backend):
    """A :class:`Backend` over an object with ``ask(prompt)`` (sync or async) returning a dict.

    >>> class Model:
    ...     provider, model = "openai", "gpt-4o-mini"
    ...     def ask(self, prompt): return {"response": "hi", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    >>> MonoAIModelBackend(Model()).describe()
    {'provider': 'openai', 'name': 'gpt-4o-mini'}

    ``provider`` and ``name`` default to the object's ``provider`` and ``model`` attributes;
    ``timeout`` (seconds, None: none) bounds a call, waiting for the object included.
    """

    def __init__(self, obj: Any, *, name: str | None = None, provider: str | None = None,
                 timeout: float | None = None, executor: concurrent.futures.Executor | None = None) -> None:
        if not callable(getattr(obj, "ask", None)):
            raise TypeError(f"{type(obj).__name__} has no ask(prompt) method")
        self.obj = obj
        self.provider = provider or str_attr(obj, "provider", "_provider", "provider_name") or "monoai"
        self.name = name or str_attr(obj, "model", "model_name", "_model", "name") or type(obj).__name__
        self.encoding_model = self.name
        self.timeout = timeout
        self.executor = executor
        self._lock = lock_for(obj)

    def __repr__(self) -> str:
        return f"MonoAIModelBackend({type(self.obj).__name__}, name={self.name!r})"

    async def stream(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
                     options: CallOptions | None = None) -> EventStream:
        prompt = prompt_of(messages)
        if _streams_natively(self.obj):
            native = _native_stream(self.obj, prompt, name=self.name, timeout=self.timeout)
            async with contextlib.aclosing(native):
                async for piece in native:
                    yield TextDelta(piece) if isinstance(piece, str) else piece
            return
        streamed, result = False, CallResult()
        call = stream_call(self.obj, "ask", prompt, result, kind="model", name=self.name, lock=self._lock,
                           executor=self.executor, timeout=self.timeout)
        async with contextlib.aclosing(call):
            async for text in call:
                streamed = True
                yield TextDelta(text)
        response, usage = response_and_usage(result.value, "model", self.name, "ask")
        if not streamed and response:
            yield TextDelta(response)
        if usage is not None:
            yield usage


def adapt_model(obj: Any) -> Backend:
    """``obj`` as a Backend: a Backend as is, an object with ``ask()`` wrapped."""
    if isinstance(obj, Backend):
        return obj
    if callable(getattr(obj, "ask", None)):
        return MonoAIModelBackend(obj)
    raise TypeError(
        f"cannot serve a {type(obj).__name__} as the model: expected a monoai_tornado Backend "
        "or an object with ask(prompt) returning a dict, like MonoAI's Model"
    )


def prompt_of(messages: list[Message]) -> str:
    """The prompt for ``ask()``: the user's message, or a transcript of a longer conversation."""
    texts = [(m.get("role", "user"), _content_text(m.get("content"))) for m in messages]
    if len(texts) == 1:
        return texts[0][1]
    return "\n\n".join(f"{role.capitalize()}: {text}" for role, text in texts if text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def response_and_usage(result: Any, kind: str, name: str, method: str) -> tuple[str, ReportedUsage | None]:
    """The response text and reported usage of what ``<method>()`` returned (a str, or a dict)."""
    if isinstance(result, str):
        return result, None
    if not isinstance(result, Mapping):
        raise BackendError(f"{kind} {name!r}: {method}() returned a {type(result).__name__}, "
                           "expected a dict with a 'response'")
    response = result.get("response")
    if response is None:
        response = ""
    elif not isinstance(response, str):
        response = str(response)
    return response, ReportedUsage.of(result.get("usage"))


def _text_of(chunk: Any) -> str | None:
    """The text of a streamed chunk: a string, bytes, a dict or an object with content/text."""
    if chunk is None or isinstance(chunk, str):
        return chunk
    if isinstance(chunk, (bytes, bytearray)):
        return bytes(chunk).decode("utf-8", "replace")
    for key in ("content", "text", "delta", "response"):
        value = chunk.get(key) if isinstance(chunk, Mapping) else getattr(chunk, key, None)
        if isinstance(value, str):
            return value
    return None if isinstance(chunk, Mapping) else str(chunk)


def str_attr(obj: Any, *names: str) -> str | None:
    """The first of the attributes ``names`` of ``obj`` that is a non-blank string."""
    for attr in names:
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value.strip():
            return value
    return None

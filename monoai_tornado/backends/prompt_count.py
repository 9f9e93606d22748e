"""A prompt's tokens as the upstream's model counts them, for answers that report no usage.

llama-cpp-python's server sends no usage when it streams, so the prompt of a streamed answer is
estimated (tiktoken with OpenAI's per-message overhead), which misses what the model's chat
template adds (SmolLM2's adds a system prompt). ``--prompt-tokens`` makes the OpenAI-compatible
backend ask the upstream instead, once the stream is over and only when it reported no usage:

================  ======================================================================
``estimate``      (the default) nothing is asked: tiktoken, OpenAI's template overhead
``chat``          the same body again, non-streamed with ``max_tokens: 1``; its
                  ``usage.prompt_tokens``. Any OpenAI-compatible server; the exact count
                  with llama-cpp-python, whose ``/extras/tokenize`` takes raw text and
                  applies no chat template. Costs one generated token (the prompt is
                  still in the server's cache)
``vllm``          ``POST {root}/tokenize`` with the messages (and tools): vLLM applies
                  the chat template and answers ``count``
``llama-server``  llama.cpp's own server: ``POST {root}/apply-template``, then
                  ``POST {root}/tokenize`` of that prompt with ``add_special`` (as its
                  chat completions tokenize it)
================  ======================================================================

``root`` is the base URL without its trailing ``/v1``. The count is asked after the stream,
never beside it: llama-cpp-python drops the request it is streaming when another one arrives.
A count that fails (an error status, a malformed answer, nothing within ``timeout``) falls back
to the estimate: one warning, then quiet until a count succeeds again; the prompt never fails.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Literal, Mapping, get_args

from tornado.httpclient import HTTPRequest

from .base import ReportedUsage, exception_of
from .upstream import shared_pool

log = logging.getLogger("monoai_tornado.backends.prompt_count")

PromptCountMethod = Literal["estimate", "chat", "vllm", "llama-server"]
#: The ``--prompt-tokens`` choices, the default first.
METHODS: tuple[str, ...] = get_args(PromptCountMethod)
#: Seconds one count may take (all its requests) before the estimate is kept.
COUNT_TIMEOUT = 10.0
#: Largest answer read from a count request (a tokenize answer lists every token).
MAX_ANSWER = 8 * 1024 * 1024


class CountFailed(Exception):
    """The upstream gave no usable count; the message says why (no secret in it)."""


class UpstreamPromptCounter:
    """Asks an OpenAI-compatible upstream how many tokens a chat-completions body's prompt is.

    >>> counter = UpstreamPromptCounter("vllm", "http://127.0.0.1:8000/v1", {})
    >>> counter.root, counter.method
    ('http://127.0.0.1:8000', 'vllm')
    """

    def __init__(self, method: str, base_url: str, headers: Mapping[str, str], *,
                 timeout: float = COUNT_TIMEOUT, redact: Callable[[str], str] = str) -> None:
        if method not in METHODS or method == "estimate":
            raise ValueError(f"prompt token method must be one of {', '.join(METHODS[1:])}, not {method!r}")
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self.method = method
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        self.timeout = timeout
        self._headers = {**headers, "Content-Type": "application/json", "Accept": "application/json"}
        self._redact = redact
        #: Whether the last count failed (the warning is given once per outage).
        self.failing = False

    async def count(self, body: Mapping[str, Any]) -> int | None:
        """The prompt tokens of ``body`` (the chat-completions request that was streamed), or
        None when the upstream could not say (logged; the caller keeps its estimate)."""
        try:
            async with asyncio.timeout(self.timeout):
                tokens = await self._count(body)
        except CountFailed as exc:
            self._failed(str(exc))
            return None
        except TimeoutError:
            self._failed(f"no answer within {self.timeout:g} s")
            return None
        if self.failing:
            log.info("upstream prompt token counts (%s) work again", self.method)
            self.failing = False
        return tokens

    def _failed(self, reason: str) -> None:
        line = "upstream prompt token count (--prompt-tokens %s) failed, the estimate is used: %s"
        if self.failing:
            log.debug(line, self.method, reason)
        else:
            log.warning(line + " (said once until a count succeeds)", self.method, reason)
            self.failing = True

    async def _count(self, body: Mapping[str, Any]) -> int:
        if self.method == "chat":
            probe = {key: value for key, value in body.items()
                     if key not in ("stream", "stream_options", "max_completion_tokens", "n")}
            answer = await self._post(self.base_url + "/chat/completions", {**probe, "stream": False, "max_tokens": 1})
            usage = ReportedUsage.of(answer.get("usage"))
            if usage is None:
                raise CountFailed("/chat/completions answered no usage")
            return usage.prompt_tokens
        if self.method == "vllm":
            request = {"model": body.get("model"), "messages": body.get("messages"), "add_generation_prompt": True}
            for key in ("tools", "chat_template_kwargs"):
                if body.get(key):
                    request[key] = body[key]
            count = (await self._post(self.root + "/tokenize", request)).get("count")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise CountFailed("/tokenize answered no count")
            return count
        template = {key: body[key] for key in ("messages", "tools", "chat_template_kwargs") if body.get(key)}
        prompt = (await self._post(self.root + "/apply-template", template)).get("prompt")
        if not isinstance(prompt, str):
            raise CountFailed("/apply-template answered no prompt")
        tokens = (await self._post(self.root + "/tokenize", {"content": prompt, "add_special": True,
                                                            "parse_special": True})).get("tokens")
        if not isinstance(tokens, list):
            raise CountFailed("/tokenize answered no tokens")
        return len(tokens)

    async def _post(self, url: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``payload`` POSTed to ``url`` over the pooled connections; the JSON object answered."""
        answer = bytearray()
        too_big = False

        def on_chunk(chunk: bytes) -> None:
            nonlocal too_big
            too_big = too_big or len(answer) + len(chunk) > MAX_ANSWER
            if not too_big:
                answer.extend(chunk)

        request = HTTPRequest(url, method="POST", headers=self._headers, follow_redirects=False,
                              body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                              streaming_callback=on_chunk, connect_timeout=self.timeout)
        call = shared_pool().fetch(request)
        where = url.removeprefix(self.root) or "/"
        try:
            response = await asyncio.shield(call.future)
        except asyncio.CancelledError:  # our timeout, or the run's cancellation: close the socket
            call.abort()
            call.future.add_done_callback(exception_of)
            raise
        except Exception as exc:
            raise CountFailed(f"{where}: {self._redact(str(exc) or type(exc).__name__)}") from None
        if not 200 <= response.code < 300:
            raise CountFailed(f"{where} answered {response.code}")
        if too_big:
            raise CountFailed(f"{where} answered more than {MAX_ANSWER} bytes")
        try:
            obj = json.loads(answer)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise CountFailed(f"{where} answered no JSON object")
        return obj



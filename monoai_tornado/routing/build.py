"""Backends of ``[[models]]`` entries, with the server's options as their defaults."""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..backends.base import Backend, CallOptions
from ..config import DeploymentConfig


def backend_factory(args: argparse.Namespace) -> Any:
    """A function building the backend of one deployment; the command line's model options
    (``--backend-timeout``, ``--max-tokens``, ``--demo-delay``...) are the entries' defaults."""

    def build(config: DeploymentConfig) -> Backend:
        if config.backend == "demo":
            from ..backends.demo import DemoBackend

            return DemoBackend(delay=args.demo_delay, chunks=args.demo_chunks, chunk_chars=args.demo_chunk_chars)
        if config.backend == "monoai":
            from ..backends.monoai_adapter import adapt_model
            from ..objects import load_object

            assert config.object is not None
            found: Any = load_object(config.object, f"[[models]] {config.id} object")
            return adapt_model(found if hasattr(found, "ask") else found())
        from ..backends.openai import OpenAIBackend

        assert config.base_url is not None
        timeout = config.timeout if config.timeout is not None else args.backend_timeout
        total = config.total_timeout if config.total_timeout is not None else args.backend_total_timeout
        defaults = CallOptions(max_tokens=config.max_tokens if config.max_tokens is not None else args.max_tokens,
                               temperature=config.temperature if config.temperature is not None else args.temperature,
                               extra={**args.extra_body, **config.extra_body})
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        return OpenAIBackend(config.base_url, config.sent_model, api_key=key, first_token_timeout=timeout,
                             idle_timeout=timeout, timeout=total or None, defaults=defaults,
                             prompt_tokens=config.prompt_tokens or args.prompt_tokens,
                             upstream_stream=config.upstream_stream or args.upstream_stream)

    return build

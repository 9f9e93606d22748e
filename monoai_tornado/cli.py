"""The command line: ``python -m monoai_tornado`` (also installed as ``monoai-tornado``)."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Callable, Sequence

from .backends.demo import DEFAULT_DELAY

DESCRIPTION = ("Serve an LLM model and its agents over HTTP, server-sent events and WebSocket. "
               "Without options it serves an offline demo model and a demo agent named 'assistant'.")


def _size(text: str) -> int:
    """A byte size: 1048576, 512k, 1m, 2MiB."""
    units = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
    raw = text.strip().lower()
    number = raw.rstrip("kmib")
    try:
        value = int(number) * units[raw[len(number):]]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use bytes, or 512k, 1m)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("port must be 0..65535")
    return value


def _limit(unit: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        from .ratelimit import parse_limit

        try:
            return parse_limit(text, unit=unit)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f"{unit} limit"
    return parse


def _cidr(text: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address or CIDR: {text!r}") from None
    return text


def _dotted(text: str) -> str:
    if text.count(":") != 1 or not all(text.split(":")):
        raise argparse.ArgumentTypeError(f"expected module:function, got {text!r}")
    return text


def load_object(spec: str) -> Any:
    """Import ``module:attribute``."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"error: {module_name} has no attribute {attribute!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="monoai-tornado", description=DESCRIPTION)
    p.add_argument("--name", default="MonoAI Tornado", help="application name shown by / and /health")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    g = p.add_argument_group("model")
    g.add_argument("--backend", choices=["demo", "openai"], default="demo")
    g.add_argument("--demo-delay", type=_non_negative_float, default=DEFAULT_DELAY,
                   help=f"seconds between demo chunks (default {DEFAULT_DELAY}; 0 for benchmarks)")
    g.add_argument("--demo-chunks", type=_positive_int, help="demo answers of exactly N chunks")
    g.add_argument("--demo-chunk-chars", type=_positive_int, default=4, help="characters per demo chunk")
    g.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1")
    g.add_argument("--model", help="model name for --backend openai")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--backend-timeout", type=_non_negative_float, default=30.0,
                   help="seconds to the first token, and of silence mid-stream, before 504")
    g.add_argument("--agents", type=_dotted, help="module:function returning a list of agents")
    g.add_argument("--no-agents", action="store_true", help="serve no agent")
    g = p.add_argument_group("limits and identity")
    g.add_argument("--limit", type=_limit("request"), action="append", default=[],
                   help="request limit such as 5/minute or 100/2hour (repeatable)")
    g.add_argument("--token-limit", type=_limit("token"), action="append", default=[],
                   help="token limit such as 1000/minute (repeatable)")
    g.add_argument("--redis-url", help="share limits through Redis, e.g. redis://127.0.0.1:6379/0")
    g.add_argument("--redis-prefix", default="monoai:", help="key prefix in Redis (default monoai:)")
    g.add_argument("--limiter-fail-open", action="store_true",
                   help="let requests pass when Redis is down (default: 503 limiter_unavailable)")
    g.add_argument("--user-validator", type=_dotted, help="module:function validating user_id")
    g.add_argument("--reject-invalid-users", action="store_true",
                   help="403 for a user_id the validator refuses (default: limit by IP)")
    g.add_argument("--trusted-proxy", type=_cidr, action="append", default=[],
                   help="CIDR of a proxy whose X-Forwarded-For is believed (repeatable)")
    g.add_argument("--admin-token", help="require 'Authorization: Bearer TOKEN' on the stats endpoints")
    g = p.add_argument_group("server")
    g.add_argument("--processes", type=_positive_int, default=1, help="worker processes on one port")
    g.add_argument("--cors-origin", action="append", default=[],
                   help="allowed CORS / WebSocket origin (repeatable; default any)")
    g.add_argument("--max-body-size", type=_size, default=1024 * 1024, help="bytes per request body (default 1m)")
    g.add_argument("--max-ws-message-size", type=_size, default=1024 * 1024,
                   help="bytes per WebSocket message (default 1m)")
    g.add_argument("--ws-ping-interval", type=_non_negative_float, default=20.0,
                   help="seconds between WebSocket keep-alive pings (0: none)")
    g.add_argument("--idle-timeout", type=_non_negative_float, default=60.0,
                   help="seconds a connection may idle or take to send its headers (default 60)")
    g.add_argument("--max-concurrent-runs", type=_positive_int, help="runs per process before 503 overloaded")
    g.add_argument("--drain-timeout", type=_non_negative_float, default=30.0,
                   help="seconds in-flight runs get to finish on SIGTERM (default 30)")
    return p


def build_backend(args: argparse.Namespace) -> Any:
    if args.backend == "openai":
        from .backends.openai import OpenAIBackend

        if not args.base_url or not args.model:
            raise SystemExit("error: --backend openai needs --base-url and --model")
        return OpenAIBackend(args.base_url, args.model, api_key=os.environ.get(args.api_key_env),
                             first_token_timeout=args.backend_timeout, idle_timeout=args.backend_timeout)
    from .backends.demo import DemoBackend

    return DemoBackend(delay=args.demo_delay, chunks=args.demo_chunks, chunk_chars=args.demo_chunk_chars)


def build_agents(args: argparse.Namespace, backend: Any) -> Any:
    if args.no_agents:
        return None
    if args.agents:
        return load_object(args.agents)()
    try:
        from .agents import default_agents
    except ImportError:
        return None
    return default_agents(backend)


def build_limiter(args: argparse.Namespace) -> Any:
    limits = [*args.limit, *args.token_limit]
    if not limits:
        return None
    from .ratelimit import MemoryStore, RateLimiter, RedisStore

    store = RedisStore(args.redis_url, prefix=args.redis_prefix) if args.redis_url else MemoryStore()
    return RateLimiter(limits, store, fail_open=args.limiter_fail_open)


def build_application(args: argparse.Namespace) -> Any:
    """The Application the options describe (called in each worker process)."""
    from .app import Application

    backend = build_backend(args)
    return Application(
        args.name,
        model=backend,
        agents=build_agents(args, backend),
        rate_limiter=build_limiter(args),
        user_validator=load_object(args.user_validator) if args.user_validator else None,
        cors_origins=args.cors_origin or ("*",),
        max_body_size=args.max_body_size,
        max_ws_message_size=args.max_ws_message_size,
        trusted_proxies=args.trusted_proxy,
        reject_invalid_users=args.reject_invalid_users,
        admin_token=args.admin_token,
        websocket_ping_interval=args.ws_ping_interval or None,
        max_concurrent_runs=args.max_concurrent_runs,
        idle_timeout=args.idle_timeout or 60.0,
    )


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse combinations that would silently misbehave."""
    if args.processes > 1 and not args.redis_url and (args.limit or args.token_limit):
        parser.error(f"--processes {args.processes} with limits needs --redis-url: with the in-memory "
                     f"store each process would keep its own budget ({args.processes}x the limit)")
    if args.backend == "openai" and (not args.base_url or not args.model):
        parser.error("--backend openai needs --base-url and --model")


def warn_about_exposure(args: argparse.Namespace) -> None:
    log = logging.getLogger("monoai_tornado")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.admin_token:
        log.warning("listening on %s without --admin-token: /rate-limit/stats is open to anyone "
                    "who can reach this address", args.host)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_options(parser, args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warn_about_exposure(args)
    from .server import run

    try:
        run(lambda: build_application(args), args.host, args.port, processes=args.processes,
            drain_timeout=args.drain_timeout)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None

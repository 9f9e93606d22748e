"""The command line: ``python -m monoai_tornado`` (also installed as ``monoai-tornado``)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, NoReturn, Sequence, TypeVar

from .version import __version__
from .backends.demo import DEFAULT_DELAY
from .backends.prompt_count import METHODS as PROMPT_COUNT_METHODS
from .extras import MissingExtra, require
from .objects import OptionError, load_object
from .redis_url import redis_url_problem

DESCRIPTION = ("Serve an LLM model and its agents over HTTP, server-sent events and WebSocket. "
               "Without options it serves an offline demo model and a demo agent named 'assistant'. "
               "API keys: python -m monoai_tornado keys create|list|revoke (see keys --help).")


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


_Number = TypeVar("_Number", int, float)


def _number(convert: Callable[[str], _Number], noun: str, valid: Callable[[_Number], bool],
            rule: str) -> Callable[[str], _Number]:
    """An argparse type: ``convert(text)``, refused as "not NOUN" when it fails, with ``rule``
    when the value is not ``valid``."""
    def parse(text: str) -> _Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(rule)
        return value

    return parse


# The numbers the options take (NaN is not >= 0: refused).
_non_negative_float = _number(float, "a number", lambda value: value >= 0, "must be >= 0")
_positive_int = _number(int, "a whole number", lambda value: value >= 1, "must be >= 1")
_port = _number(int, "a port", lambda value: 0 <= value <= 65535, "port must be 0..65535")


def _json_object(text: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"top_k\": 40}'")
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


def _spend_limit(text: str) -> Any:
    from .ratelimit.limits import parse_spend_limit

    try:
        return parse_spend_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _price(text: str) -> str:
    from .money.prices import Prices

    try:
        Prices.per_million(text, 0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("price_input", "price")) from None
    return text


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


def _shown(default: Any) -> str:
    if default is None or default == []:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text:
            return text
        return f"{text} (default: {_shown(action.default)})"


class _Parser(argparse.ArgumentParser):
    """Errors in one line, not under the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="monoai-tornado", description=DESCRIPTION, formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--config", metavar="PATH",
                   help="TOML file: [server] options, [[models]] deployments, [routing] (see README, 'Several "
                        "models'); every option also reads MONOAI_<NAME> from the environment (default: none)")
    p.add_argument("--name", default="MonoAI Tornado", help="application name shown by / and /health")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on (0: any free port)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="least severe log lines shown")
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="text lines, or one JSON object per line (time, level, logger, message, request_id, "
                        "and the access lines' fields)")
    p.add_argument("--access-log", default="on", choices=["on", "off"], help="one line per request and WebSocket prompt")
    p.add_argument("--otel", action="store_true",
                   help="OpenTelemetry traces (GenAI conventions) sent by OTLP/HTTP as the OTEL_EXPORTER_OTLP_* "
                        "and OTEL_TRACES_SAMPLER* variables say; also MONOAI_OTEL=1 "
                        "(needs pip install 'monoai_tornado[otel]')")
    g = p.add_argument_group("model")
    g.add_argument("--backend", choices=["demo", "openai"], default="demo",
                   help="the offline demo model, or an OpenAI-compatible server (--base-url, --model)")
    g.add_argument("--demo-delay", type=_non_negative_float, default=DEFAULT_DELAY,
                   help="seconds between demo chunks (0 for benchmarks)")
    g.add_argument("--demo-chunks", type=_positive_int, help="demo answers of exactly N chunks (default: none, "
                   "answers repeat the prompt)")
    g.add_argument("--demo-chunk-chars", type=_positive_int, default=4, help="characters per demo chunk of --demo-chunks")
    g.add_argument("--base-url", help="OpenAI-compatible server for --backend openai, e.g. http://127.0.0.1:11434/v1")
    g.add_argument("--model", help="model name for --backend openai")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--backend-timeout", type=_non_negative_float, default=30.0,
                   help="seconds to the first token, and of silence mid-stream, before 504")
    g.add_argument("--backend-total-timeout", type=_non_negative_float, default=0.0,
                   help="seconds a whole answer may take before 504 (default 0: no limit while it flows)")
    g.add_argument("--upstream-stream", choices=["always", "as-client"], default="always",
                   help="always (default): stream every upstream call; as-client: a non-streamed request is sent "
                        "upstream non-streamed (less CPU; its whole answer must come within --backend-total-timeout, "
                        "else --backend-timeout)")
    g.add_argument("--max-tokens", type=_positive_int, help="max_tokens sent upstream when a call sets none")
    g.add_argument("--temperature", type=_non_negative_float, help="temperature sent upstream when a call sets none")
    g.add_argument("--extra-body", type=_json_object, default={},
                   help='JSON object merged into every upstream request, e.g. \'{"top_k": 40}\'')
    g.add_argument("--prompt-tokens", choices=PROMPT_COUNT_METHODS, default="estimate",
                   help="prompt tokens of an answer sent without usage (llama-cpp-python streaming): "
                        "estimate (tiktoken), or ask the upstream after the answer: chat (a 1-token "
                        "completion; exact for llama-cpp-python), vllm (/tokenize), llama-server "
                        "(/apply-template, /tokenize); on failure the estimate, one warning")
    g.add_argument("--price-input", type=_price, metavar="USD",
                   help="USD per million prompt tokens: usages then carry cost_usd, spend limits hold "
                        "(default: none, cost not tracked)")
    g.add_argument("--price-output", type=_price, metavar="USD", help="USD per million completion tokens")
    g.add_argument("--price-cached-input", type=_price, metavar="USD",
                   help="USD per million cached prompt tokens (default: --price-input)")
    g.add_argument("--agents", type=_dotted,
                   help="module:function returning a list of agents, served instead of the demo agent "
                        "(default: the demo agent 'assistant')")
    g.add_argument("--no-agents", action="store_true", help="serve no agent")
    g = p.add_argument_group("limits and identity")
    g.add_argument("--limit", type=_limit("request"), action="append", default=[],
                   help="request limit such as 5/minute or 100/2hour (repeatable)")
    g.add_argument("--token-limit", type=_limit("token"), action="append", default=[],
                   help="token limit such as 1000/minute (repeatable)")
    g.add_argument("--spend-limit", type=_spend_limit, action="append", default=[], metavar="USD/WINDOW",
                   help="spend limit per user such as 0.50/hour, 5/day, 100/month (repeatable; day and month "
                        "are calendar periods in UTC; needs a priced model: --price-input/--price-output)")
    g.add_argument("--concurrency-limit", type=_positive_int,
                   help="runs a user may have in flight at once, over every transport, before 429 "
                        "too_many_concurrent (default: none, no limit)")
    g.add_argument("--redis-url", help="share limits through Redis, e.g. redis://127.0.0.1:6379/0, a cluster: "
                        "redis+cluster://host:port[,host:port] or Sentinels: redis+sentinel://host:port[,host:port]/name "
                        "(default: none, counters in memory; needs pip install 'monoai_tornado[redis]')")
    g.add_argument("--redis-prefix", default="monoai:", help="key prefix in Redis")
    g.add_argument("--limiter-fail-open", action="store_true",
                   help="let requests pass when Redis is down (default: 503 limiter_unavailable)")
    g.add_argument("--user-validator", type=_dotted,
                   help="module:function validating user_id (default: none, every user_id taken as is)")
    g.add_argument("--reject-invalid-users", action="store_true",
                   help="403 for a user_id the validator refuses (default: limit by IP)")
    g.add_argument("--trusted-proxy", type=_cidr, action="append", default=[],
                   help="CIDR of a proxy whose X-Forwarded-For is believed (repeatable)")
    g.add_argument("--admin-token", help="require 'Authorization: Bearer TOKEN' on the stats endpoints (default: none, open)")
    g = p.add_argument_group("API keys (make them with: python -m monoai_tornado keys create --help)")
    g.add_argument("--keys-file", metavar="PATH", help="API keys in this JSON file (hashes only; changes noticed within 2 s)")
    g.add_argument("--keys-redis", action="store_true", help="API keys in the Redis of --redis-url, shared by every process")
    g.add_argument("--require-api-key", action="store_true",
                   help="refuse prompts without 'Authorization: Bearer KEY' (401 missing_api_key)")
    g = p.add_argument_group("server")
    g.add_argument("--processes", type=_positive_int, default=1, help="worker processes on one port")
    g.add_argument("--cors-origin", action="append", default=[],
                   help="allowed CORS / WebSocket origin (repeatable; default: any)")
    g.add_argument("--max-body-size", type=_size, default="1m", help="bytes per request body (512k, 1m, ...)")
    g.add_argument("--max-ws-message-size", type=_size, default="1m", help="bytes per WebSocket message")
    g.add_argument("--ws-ping-interval", type=_non_negative_float, default=20.0,
                   help="seconds between WebSocket keep-alive pings (0: none)")
    g.add_argument("--idle-timeout", type=_non_negative_float, default=60.0,
                   help="seconds a connection may idle or take to send its headers")
    g.add_argument("--max-concurrent-runs", type=_positive_int,
                   help="runs per process before 503 overloaded (default: none, no cap)")
    g.add_argument("--default-max-tokens", type=_positive_int, default=4096,
                   help="completion cap of a request without max_tokens")
    g.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"], default="auto",
                   help="auto (default): uvloop when installed (pip install 'monoai_tornado[fast]'), else asyncio")
    g.add_argument("--http-parser", choices=["auto", "httptools", "tornado"], default="auto",
                   help="auto (default): the httptools server side when installed (pip install "
                        "'monoai_tornado[fast]'), else Tornado's own HTTPServer")
    g.add_argument("--drain-timeout", type=_non_negative_float, default=30.0,
                   help="seconds in-flight runs get to finish on SIGTERM")
    g = p.add_argument_group("usage ledger")
    g.add_argument("--usage-log", metavar="PATH|redis",
                   help="one JSON line per finished run appended to PATH, or to the Redis stream PREFIX+usage "
                        "of --redis-url with 'redis' (default: none)")
    g.add_argument("--usage-log-max", type=_positive_int, default=1_000_000,
                   help="entries the Redis usage stream keeps")
    return p


def build_backend(args: argparse.Namespace) -> Any:
    if args.backend == "openai":
        from .backends.openai import OpenAIBackend

        if not args.base_url or not args.model:
            raise SystemExit("error: --backend openai needs --base-url and --model")
        from .backends.base import CallOptions

        defaults = CallOptions(max_tokens=args.max_tokens, temperature=args.temperature, extra=args.extra_body)
        return OpenAIBackend(args.base_url, args.model, api_key=os.environ.get(args.api_key_env),
                             first_token_timeout=args.backend_timeout, idle_timeout=args.backend_timeout,
                             timeout=args.backend_total_timeout or None, defaults=defaults,
                             prompt_tokens=args.prompt_tokens, upstream_stream=args.upstream_stream)
    from .backends.demo import DemoBackend

    return DemoBackend(delay=args.demo_delay, chunks=args.demo_chunks, chunk_chars=args.demo_chunk_chars)


def build_agents(args: argparse.Namespace, backend: Any) -> Any:
    if args.no_agents:
        return None
    if args.agents:
        factory = load_object(args.agents, "--agents")
        try:
            agents = factory()
        except Exception as exc:
            raise OptionError(f"--agents {args.agents} raised {type(exc).__name__}: {exc}") from None
        if not isinstance(agents, (list, tuple, dict)):
            raise OptionError(f"--agents {args.agents} returned {type(agents).__name__}, not a list of agents")
        return agents
    try:
        from .agents import default_agents
    except ImportError:
        return None
    return default_agents(backend)


def build_prices(args: argparse.Namespace) -> Any:
    """The model's prices from --price-input/--price-output/--price-cached-input (None: unpriced)."""
    if args.price_input is None and args.price_output is None:
        return None
    from .money.prices import Prices

    return Prices.per_million(args.price_input or 0, args.price_output or 0, args.price_cached_input)


def build_ledger(args: argparse.Namespace) -> Any:
    if not args.usage_log:
        return None
    from .money.ledger import FileLedger, RedisLedger

    if args.usage_log == "redis":
        return RedisLedger(args.redis_url, prefix=args.redis_prefix, max_entries=args.usage_log_max)
    return FileLedger(args.usage_log)


def build_limiter(args: argparse.Namespace) -> Any:
    limits = [*args.limit, *args.token_limit, *args.spend_limit]
    # Keys carry limits of their own: with Redis, the processes must count them in it too.
    shared_keys = bool(args.redis_url and (args.keys_file or args.keys_redis))
    if not limits and args.concurrency_limit is None and not shared_keys:
        return None
    from .ratelimit import MemoryStore, RateLimiter

    options = {"fail_open": args.limiter_fail_open, "concurrency_limit": args.concurrency_limit}
    if not args.redis_url:
        return RateLimiter(limits, MemoryStore(), **options)
    require("redis.asyncio", "redis", "--redis-url")
    from .ratelimit.redis_store import RedisStore

    return RateLimiter(limits, RedisStore(args.redis_url, prefix=args.redis_prefix), **options)


def build_keys(args: argparse.Namespace) -> Any:
    if not args.keys_file and not args.keys_redis:
        return None
    from .keys import FileKeyStore, KeyRing

    if args.keys_file:
        return KeyRing(FileKeyStore(args.keys_file), require=args.require_api_key)
    from .keys import RedisKeyStore

    return KeyRing(RedisKeyStore(args.redis_url, prefix=args.redis_prefix), require=args.require_api_key)


def build_gateway(args: argparse.Namespace, limiter: Any) -> Any:
    """The gateway of the file's ``[[models]]`` (None without them); their ``rpm`` / ``tpm``
    count in the limiter's store (Redis with ``--redis-url``)."""
    config = getattr(args, "gateway_config", None)
    if config is None or not config.models:
        return None
    from .config import load_config
    from .routing import Gateway
    from .routing.build import backend_factory
    from .usage import shared_counter

    store = limiter.store if limiter is not None and hasattr(limiter, "store") else None
    if store is None and args.redis_url:
        from .ratelimit.redis_store import RedisStore

        store = RedisStore(args.redis_url, prefix=args.redis_prefix)
    parser = build_parser()
    gateway = Gateway(config, backend_factory(args), shared_counter(None), store=store,
                      loader=lambda path: load_config(path, parser))
    if limiter is not None and hasattr(limiter, "replace_limits"):
        from .config import reloaded_limits

        def reload_limits(router: Any) -> None:
            limits = reloaded_limits(args, router.config)
            if limits is not None and limits != limiter.limits:
                limiter.replace_limits(limits)
                logging.getLogger("monoai_tornado").info(
                    "limits reloaded: %s", ", ".join(limit.name for limit in limits) or "none")

        gateway.on_reload.append(reload_limits)
    return gateway


def build_responses_store(args: argparse.Namespace) -> Any:
    """Stored responses of ``/v1/responses``: in the Redis of ``--redis-url`` (shared), else in memory."""
    if not args.redis_url:
        return None
    from .dialects.responses_store import RedisResponseStore

    return RedisResponseStore(args.redis_url, prefix=args.redis_prefix)


def build_application(args: argparse.Namespace) -> Any:
    """The Application the options describe (called in each worker process)."""
    from .app import Application

    limiter = build_limiter(args)
    gateway = build_gateway(args, limiter)
    backend = gateway.default.backend if gateway is not None else build_backend(args)
    return Application(
        args.name,
        model=backend,
        agents=build_agents(args, backend),
        rate_limiter=limiter,
        user_validator=load_object(args.user_validator, "--user-validator") if args.user_validator else None,
        cors_origins=args.cors_origin or ("*",),
        max_body_size=args.max_body_size,
        max_ws_message_size=args.max_ws_message_size,
        trusted_proxies=args.trusted_proxy,
        reject_invalid_users=args.reject_invalid_users,
        admin_token=args.admin_token,
        websocket_ping_interval=args.ws_ping_interval or None,
        max_concurrent_runs=args.max_concurrent_runs,
        default_max_tokens=args.default_max_tokens,
        idle_timeout=args.idle_timeout or 60.0,
        keys=build_keys(args),
        gateway=gateway,
        prices=build_prices(args),
        usage_ledger=build_ledger(args),
        responses_store=build_responses_store(args),
        otel=args.otel,
        http_parser=args.http_parser,
    )


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse combinations that would silently misbehave."""
    if args.processes > 1 and not args.redis_url and (args.limit or args.token_limit or args.spend_limit
                                                      or args.concurrency_limit):
        parser.error(f"--processes {args.processes} with limits needs --redis-url: with the in-memory "
                     f"store each process would keep its own budget ({args.processes}x the limit)")
    if args.backend == "openai" and (not args.base_url or not args.model):
        parser.error("--backend openai needs --base-url and --model")
    if args.usage_log == "redis" and not args.redis_url:
        parser.error("--usage-log redis appends to the Redis of --redis-url: give --redis-url")
    if args.usage_log and args.usage_log != "redis":
        try:
            open(args.usage_log, "a").close()
        except OSError as exc:
            parser.error(f"--usage-log {args.usage_log}: {exc.strerror or exc}")
    if args.redis_url and (problem := redis_url_problem(args.redis_url)) is not None:
        parser.error(f"--redis-url {problem}")
    if args.admin_token is not None and not args.admin_token.strip():
        parser.error("--admin-token is empty (an unset variable?): give a token, e.g. from MONOAI_ADMIN_TOKEN, "
                     "or leave the option out")
    try:
        if args.redis_url:
            require("redis.asyncio", "redis", "--redis-url")
        if args.event_loop == "uvloop":
            require("uvloop", "fast", "--event-loop uvloop")
        if args.http_parser == "httptools":
            require("httptools", "fast", "--http-parser httptools")
        if args.otel:
            require("opentelemetry.sdk.trace", "otel", "--otel")
            require("opentelemetry.exporter.otlp.proto.http.trace_exporter", "otel", "--otel")
        for option, spec in (("--user-validator", args.user_validator), ("--agents", args.agents)):
            if spec:
                load_object(spec, option)
    except (OptionError, MissingExtra) as exc:
        parser.error(str(exc))
    check_key_options(parser, args)


def check_key_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.keys_file and args.keys_redis:
        parser.error("choose one key store: --keys-file or --keys-redis")
    if args.keys_redis and not args.redis_url:
        parser.error("--keys-redis keeps keys in the Redis of --redis-url: give --redis-url")
    if args.require_api_key and not (args.keys_file or args.keys_redis):
        parser.error("--require-api-key needs a key store: --keys-file PATH or --keys-redis")
    if args.keys_file:
        from .keys import FileKeyStore, KeysFileError

        try:
            FileKeyStore(args.keys_file)
        except (KeysFileError, OSError) as exc:
            parser.error(f"--keys-file: {exc}")


def warn_about_exposure(args: argparse.Namespace) -> None:
    log = logging.getLogger("monoai_tornado")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.admin_token:
        log.warning("listening on %s without --admin-token: /rate-limit/stats is open to anyone "
                    "who can reach this address", args.host)
    if (args.keys_file or args.keys_redis) and not args.require_api_key:
        log.warning("API keys are accepted but not required: requests without a key still name their own "
                    "user_id; start with --require-api-key so that nobody spends another user's budget")
    if args.spend_limit and args.price_input is None and args.price_output is None and not getattr(args, "config", None):
        log.warning("--spend-limit without prices: the model cannot be held to a budget, so every prompt gets "
                    "403 model_not_priced; price it with --price-input and --price-output (USD per million tokens)")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["keys"]:
        from .keys.cli import main as keys_main

        keys_main(argv[1:])
        return
    parser = build_parser()
    args = parser.parse_args(argv)
    from .config import ConfigError, resolve_options, secrets_on_command_line

    try:
        args.gateway_config = resolve_options(parser, args, argv)
    except ConfigError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    check_options(parser, args)
    from .server import configure_logging, run

    configure_logging(args.log_level, args.log_format, access_log=args.access_log == "on")
    warn_about_exposure(args)
    for option in secrets_on_command_line(parser, argv):
        logging.getLogger("monoai_tornado").warning(
            "--%s was given on the command line, where every user of this machine can read it (ps); "
            "set MONOAI_%s in the environment or put it in the --config file instead",
            option.replace("_", "-"), option.upper())
    try:
        run(lambda: build_application(args), args.host, args.port, processes=args.processes,
            drain_timeout=args.drain_timeout, event_loop=args.event_loop, banner=args.log_format == "text")
    except (OptionError, MissingExtra) as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        raise SystemExit(1) from None

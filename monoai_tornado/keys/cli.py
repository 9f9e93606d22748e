"""``python -m monoai_tornado keys create|list|revoke``: manage API keys from a shell.

    python -m monoai_tornado keys create --user alice --limit 5/minute --keys-file keys.json
    python -m monoai_tornado keys list --json --keys-file keys.json
    python -m monoai_tornado keys revoke key_3f9a0c1d2e4b --keys-file keys.json

``create`` prints the key alone on standard output (the details go to standard error), so
``KEY=$(python -m monoai_tornado keys create ...)`` works.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, Sequence

from ..errors import KeyStoreUnavailable
from ..redis_url import redis_url_problem
from .file_store import FileKeyStore, KeysFileError
from .records import ApiKey, new_key, parse_duration
from .store import KeyStore


def _limit(unit: str) -> Any:
    def parse(text: str) -> str:
        from ..ratelimit import parse_limit

        try:
            parse_limit(text, unit=unit)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text.strip()

    parse.__name__ = f"{unit} limit"
    return parse


def _spend_limit(text: str) -> str:
    from ..ratelimit.limits import parse_spend_limit

    try:
        parse_spend_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _store_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--keys-file", metavar="PATH", help="the JSON keys file the server reads (--keys-file)")
    where.add_argument("--redis-url", metavar="URL", help="the Redis the server keeps keys in (--keys-redis)")
    parser.add_argument("--redis-prefix", default="monoai:", help="key prefix in Redis (default monoai:)")


def _models(text: str) -> list[str]:
    """``chat,gpt-4o-mini`` -> ``["chat", "gpt-4o-mini"]``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one model, e.g. --models chat,gpt-4o-mini")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monoai-tornado keys", description="Create, list and revoke API keys.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{create,list,revoke}")
    create = commands.add_parser("create", help="make a key; prints it once")
    create.add_argument("--user", required=True, help="the user the key's requests are limited and billed as")
    create.add_argument("--name", help="a label for people (laptop, ci, ...)")
    create.add_argument("--limit", type=_limit("request"), action="append", default=[],
                        help="request limit such as 5/minute (repeatable; replaces the server's defaults)")
    create.add_argument("--token-limit", type=_limit("token"), action="append", default=[],
                        help="token limit such as 1000/minute (repeatable; replaces the server's defaults)")
    create.add_argument("--spend-limit", type=_spend_limit, action="append", default=[], metavar="USD/WINDOW",
                        help="spend limit such as 5/day or 100/month (repeatable; replaces the server's defaults)")
    create.add_argument("--models", type=_models, action="extend", default=[], metavar="NAME,NAME",
                        help="the models the key may use, comma-separated (default: every model)")
    create.add_argument("--expires-in", type=_duration, metavar="DURATION", help="30d, 12h, 15m, 90s or seconds")
    _store_options(create)
    listing = commands.add_parser("list", help="every key, without secrets")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    _store_options(listing)
    revoke = commands.add_parser("revoke", help="revoke a key by its id (key_...)")
    revoke.add_argument("key_id", metavar="KEY_ID")
    _store_options(revoke)
    return parser


def open_store(args: argparse.Namespace) -> KeyStore:
    """The store the options name; a missing file, a wrong URL or no redis package: one line, exit 1."""
    if args.keys_file:
        if args.command != "create" and not os.path.exists(args.keys_file):
            raise SystemExit(f"error: the keys file {args.keys_file!r} does not exist "
                             "(keys create --keys-file makes it)")
        return FileKeyStore(args.keys_file)
    problem = redis_url_problem(args.redis_url)
    if problem is not None:
        raise SystemExit(f"error: --redis-url {problem}")
    try:
        from .redis_store import RedisKeyStore

        return RedisKeyStore(args.redis_url, prefix=args.redis_prefix)
    except ImportError:
        raise SystemExit("error: --redis-url needs the redis package (pip install 'monoai_tornado[redis]')") from None


LIST_FIELDS = ("id", "user", "name", "prefix", "created_at", "expires_at", "revoked")


def _listing_line(record: ApiKey) -> str:
    public = record.public()
    status = "revoked" if record.revoked else "expired" if record.expired() else "active"
    return "  ".join([public["id"], public["prefix"] + "...", status, f"user={record.user}",
                      f"name={record.name or '-'}", f"created={public['created_at']}",
                      f"expires={public['expires_at'] or 'never'}"])


async def run(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        if args.command == "create":
            secret, record = new_key(args.user, name=args.name, limits=args.limit, token_limits=args.token_limit,
                                     spend_limits=args.spend_limit, models=args.models,
                                     expires_in=args.expires_in)
            await store.add(record)
            print(secret, flush=True)
            print(f"created {record.id} for user {record.user!r}"
                  f"{', expires ' + str(record.public()['expires_at']) if record.expires_at else ''}; "
                  "the key is shown only this once", file=sys.stderr)
        elif args.command == "list":
            for record in await store.all():
                if args.json:
                    public = record.public()
                    print(json.dumps({name: public[name] for name in LIST_FIELDS}, ensure_ascii=False))
                else:
                    print(_listing_line(record))
        else:
            revoked = await store.revoke(args.key_id)
            if revoked is None:
                print(f"error: no key with id {args.key_id!r}", file=sys.stderr)
                return 1
            print(f"revoked {revoked.id} (user {revoked.user!r})")
        return 0
    finally:
        await store.aclose()


def main(argv: Sequence[str]) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = asyncio.run(run(args))
    except (ValueError, KeysFileError, KeyStoreUnavailable, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code)

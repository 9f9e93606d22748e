"""A ``--redis-url`` checked at start: a wrong one is one line, not redis-py's traceback.

>>> redis_url_problem("redis://127.0.0.1:6379/0") is None
True
>>> redis_url_problem("localhost:6379")
"'localhost:6379' has no scheme: write redis://HOST:PORT/DB (or rediss://, unix://, redis+cluster://, redis+sentinel://)"
>>> redis_url_problem("redis://host:notaport/5")
"'redis://host:notaport/5': the port 'notaport' is not a number"
"""
from __future__ import annotations

import urllib.parse

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "redis+sentinel")


def redis_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a Redis URL this server takes, or None."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in SCHEMES:
        return (f"{url!r} has no scheme: write redis://HOST:PORT/DB (or rediss://, unix://, redis+cluster://, "
                "redis+sentinel://)")
    scheme = scheme.lower()
    if scheme == "unix":
        return None
    addresses, _, path = rest.partition("/")
    addresses = addresses.rpartition("@")[2]
    for address in addresses.split(","):
        host, port = _host_port(address.strip())
        if not host:
            return f"{url!r}: no host before the port"
        if port is not None and not port.isdigit():
            return f"{url!r}: the port {port!r} is not a number"
        if port is not None and not 0 < int(port) < 65536:
            return f"{url!r}: the port {port} is out of range"
    if scheme in ("redis", "rediss"):
        if "," in addresses:
            return f"{url!r}: several hosts need redis+cluster:// or redis+sentinel://"
        database = urllib.parse.unquote(path.partition("?")[0])
        if database and not database.isdigit():
            return f"{url!r}: the database {database!r} is not a number"
    return None


def _host_port(address: str) -> tuple[str, str | None]:
    """``host:port`` (``[v6]:port``) split; the port None when there is none."""
    if address.startswith("["):
        host, _, after = address[1:].partition("]")
        return host, after[1:] if after.startswith(":") else None
    host, colon, port = address.rpartition(":")
    return (host, port) if colon else (address, None)

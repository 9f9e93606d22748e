"""The Redis store: one budget shared by every process and machine that uses the same Redis.

Each decision is one EVALSHA of ``admit.lua`` (shipped beside this module), which checks every
limit and only then counts, atomically. The decisions and settlements asked for in one pass of
the event loop go to Redis together, in one pipelined round trip (each script still runs on its
own and atomically), so under load a round trip serves many requests.

Keys are laid out by user, so that they shard over a Redis Cluster (``redis+cluster://``)::

    {prefix}{{user}}l:{limit name}:{window start}   hash u -> used (requests, tokens or
                                                    nano-dollars, reservations included),
                                                    h -> reserved by runs in flight; expires
                                                    with its window
    {prefix}{{user}}s                               sorted set: the user's runs in flight ->
                                                    expiry (ms); expires 30 s after the last
    {prefix}{{user}}adm:{admission id}             hash: what one admission counted and whether
                                                    it was settled; expires 2 minutes after
                                                    the admission, 30 s after the settle

``{user}`` is a hash tag (the user id with ``%``, ``{`` and ``}`` percent-escaped, so nobody
picks another's slot): one admission's keys all live in one slot, hence one node, and users
spread over the nodes. No key is written by every admission: the window's fleet figures for
``/rate-limit/stats`` are summed on read, by a SCAN of every master (see :meth:`window_stats`),
a rare admin read, rather than kept in a per-window total that would be one hot key on one
node. Any Redis error (connection, timeout, CLUSTERDOWN, CROSSSLOT...) raises
:class:`StoreUnavailable` for the call it hit; the limiter turns it into a 503 or a degraded pass.
"""
from __future__ import annotations

import asyncio
import math
import time
from importlib import resources
from typing import Any, Callable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import NoScriptError
from redis.exceptions import RedisClusterException
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..money.prices import Quote
from .limiter import StoreUnavailable
from .limits import Limit

__all__ = ["RedisStore"]

#: Milliseconds a concurrency slot lives unless its process refreshes it: a crashed process's
#: slots free themselves within this time.
SLOT_TTL_MS = 30_000
#: Seconds between two refreshes of the slots a process holds.
SLOT_REFRESH = 10.0

#: Failures that mean "the store cannot answer now": any Redis or cluster error (a lost or
#: refused connection, a timeout, CLUSTERDOWN, CROSSSLOT, a script error...), never a 500.
UNAVAILABLE = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
#: Failures after which a command may have run without its reply arriving: sent again once
#: when the command carries an admission id (it then counts once).
LOST = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
#: Milliseconds an admission's record lives (what it counted, whether it was settled): long
#: enough for its retry or release, short enough to cost little memory per admission.
ADMISSION_TTL_MS = 120_000
#: Milliseconds a settled admission's record lives (for a settle sent again after a lost reply).
SETTLED_TTL_MS = 30_000
CLUSTER_SCHEME = "redis+cluster://"
SENTINEL_SCHEME = "redis+sentinel://"


def _nodes(url: str, scheme: str) -> tuple[list[tuple[str, int]], str]:
    """``scheme host:port[,host:port][/rest]`` -> ([(host, port), ...], rest)."""
    addresses, _, rest = url[len(scheme):].partition("/")
    nodes = []
    for address in addresses.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{url}: expected {scheme}host:port[,host:port]")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, rest


def connect(url: str, *, socket_timeout: float, max_connections: int) -> Any:
    """A redis-py asyncio client for ``url``: ``redis+cluster://host:port[,host:port]`` gives a
    :class:`RedisCluster` started from those nodes, ``redis+sentinel://host:port[,host:port]/name``
    the master that those Sentinels name ``name`` (default ``mymaster``), any other URL a plain
    :class:`Redis`."""
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout, "retry": Retry(NoBackoff(), 0),
    }
    if url.startswith(SENTINEL_SCHEME):
        from redis.asyncio.sentinel import Sentinel

        sentinels, service = _nodes(url, SENTINEL_SCHEME)
        sentinel = Sentinel(sentinels, sentinel_kwargs=dict(timeouts), **timeouts)
        return sentinel.master_for(service or "mymaster", max_connections=max_connections)
    if not url.startswith(CLUSTER_SCHEME):
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=socket_timeout,
                                                        **timeouts)
        return aioredis.Redis.from_pool(pool)  # closing the client closes the pool
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(host, port) for host, port in _nodes(url, CLUSTER_SCHEME)[0]]
    return RedisCluster(startup_nodes=nodes, max_connections=max_connections,
                        **timeouts)


def tag_escape(text: str) -> str:
    """``text`` without ``{`` or ``}`` (percent-escaped, ``%`` too, so it stays one-to-one):
    a user id cannot end its hash tag early and so pick another user's slot."""
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class RedisStore:
    """Counters in Redis, shared by many limiters (processes, machines).

    Example::

        store = RedisStore("redis://127.0.0.1:6379/0", prefix="myapp:")
        limiter = RateLimiter([Limit("request", 10, "minute")], store)

    Every limiter sharing a prefix must use the same limits (names identify the counters).
    ``socket_timeout`` bounds connecting and each answer: past it the request gets a 503
    (or passes, fail open) rather than waiting on a sick Redis. Admissions and settlements
    that carry an id (:meth:`admit_once`, :meth:`settle_once`, what :class:`RateLimiter`
    uses) are sent again once when their reply was lost, and count once; an admission that
    still gets no reply is released, so nothing stays reserved. Others are not retried.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "monoai:",
        *,
        socket_timeout: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.cluster = url.startswith(CLUSTER_SCHEME)
        self._redis = connect(url, socket_timeout=socket_timeout, max_connections=max_connections)
        self._admit = self._redis.register_script(_script("admit.lua"))
        self._settle = self._redis.register_script(_script("settle.lua"))
        self._encode: Callable[[Any], bytes] = self._redis.get_encoder().encode
        self._bound: Sequence[Limit] | None = None
        self._heads: list[str] = []
        self._head = tag_escape(prefix)
        #: Concurrency slots this process holds: slot id -> key; kept alive by a heartbeat.
        self._slots: dict[str, str] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        #: The limiter's clock at the last admission, and ``time.monotonic()`` then.
        self._last_now = (0.0, 0.0)
        #: Script calls waiting for this loop pass's round trip: (script, keys, args, future).
        self._queued: list[tuple[Any, list[Any], list[Any], asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> Any:
        """The redis-py client (for tests and maintenance)."""
        return self._redis

    def _keys(self, user: str, limits: Sequence[Limit], starts: Sequence[int]) -> list[str]:
        """Per limit: ``user``'s hash in its current window (``u`` used, ``h`` reserved)."""
        if limits is not self._bound:
            self._bound = limits
            self._heads = [f"}}l:{limit.name}:" for limit in limits]
        tag = f"{self._head}{{{tag_escape(user)}"
        return [f"{tag}{head}{start}" for head, start in zip(self._heads, starts)]

    def _slot_key(self, user: str) -> str:
        """The sorted set of ``user``'s runs in flight (slot id -> expiry in ms)."""
        return f"{self._head}{{{tag_escape(user)}}}s"

    def _record_key(self, user: str, admission_id: str) -> str:
        """The record of ``user``'s admission ``admission_id`` (what it counted; whether settled)."""
        return f"{self._head}{{{tag_escape(user)}}}adm:{admission_id}"

    def _run_script(self, script: Any, keys: list[Any], args: list[Any]) -> "asyncio.Future[Any]":
        """Queue one script call for this loop pass's round trip; the future gets its reply.

        The first call of a pass starts the task that sends; it runs in the next pass, by
        when every call of this pass has joined the queue. Arguments are encoded here, so
        that one that cannot be (text that is not valid Unicode) fails its own call only.
        """
        future = asyncio.get_running_loop().create_future()
        try:
            args = [self._encode(arg) if type(arg) is str else arg for arg in args]
            keys = [self._encode(key) for key in keys]
        except (UnicodeEncodeError, DataError) as exc:
            # Fails this call alone: left in the batch, it would fail every call of the pass.
            future.set_exception(ValueError(f"an argument cannot be sent to Redis: {exc}"))
            return future
        self._queued.append((script, keys, args, future))
        if len(self._queued) == 1:
            task = asyncio.ensure_future(self._send())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return future

    async def _send(self) -> None:
        """One pipelined round trip for every queued call (scripts reloaded if Redis lost them)."""
        batch, self._queued = self._queued, []
        try:
            replies = await self._call(self._evalsha_all([(script, keys, args) for script, keys, args, _ in batch]))
        except Exception as exc:  # StoreUnavailable, or a bug or misconfigured server: every caller sees it
            replies = [exc] * len(batch)
        for (*_, future), reply in zip(batch, replies):
            if not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(self._unavailable(reply) if isinstance(reply, UNAVAILABLE) else reply)
                else:
                    future.set_result(reply)

    async def _evalsha_all(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        replies = await self._pipelined(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # first use, or Redis restarted: load the scripts, run those calls again
            for script in {calls[i][0] for i in missing}:
                try:  # on a cluster, loaded on every master; a master that is down fails its calls
                    await self._redis.script_load(script.script)
                except UNAVAILABLE:
                    pass
            for i, reply in zip(missing, await self._pipelined([calls[i] for i in missing])):
                replies[i] = reply
        return replies

    async def _pipelined(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                # execute_command, not evalsha(): redis-py's cluster pipeline blocks the method
                # name, but routes the command itself by its keys' slot.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def _call(self, coroutine: Any) -> Any:
        try:
            return await coroutine
        except UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        unavailable = StoreUnavailable(f"redis at {self.url}: {type(exc).__name__}: {exc}")
        unavailable.__cause__ = exc
        return unavailable

    async def admit(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int, now: float,
        cap: int = 0, slot: tuple[int, str] | None = None, quote: Quote | None = None,
    ) -> tuple[bool, list[int], int]:
        """Check every limit (and the concurrency ``slot``), then count the request and reserve
        its tokens and money: one EVALSHA (see ``admit.lua``), not retried."""
        return await self.admit_once("", user, limits, starts, tokens, now, cap, slot, quote)

    async def admit_once(
        self, admission_id: str, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int,
        now: float, cap: int = 0, slot: tuple[int, str] | None = None, quote: Quote | None = None,
    ) -> tuple[bool, list[int], int]:
        """:meth:`admit`, counted once per ``admission_id`` however often it is sent.

        The script records what the admission counted (for ``ADMISSION_TTL_MS``). A reply lost
        (timeout, dropped connection) is asked again once with the same id, which answers the
        recorded result when the first call ran; when that fails too, the admission is released
        by id (what it counted is taken back, or a late copy is refused) and the error raised.
        """
        limit_slots, slot_id = slot if slot is not None else (0, "")
        prompt_picos, per_token = quote or (0, 0)
        args: list[Any] = [user, tokens, cap, limit_slots, slot_id, int(now * 1000), SLOT_TTL_MS, prompt_picos,
                           per_token, admission_id, ADMISSION_TTL_MS]
        for limit, start in zip(limits, starts):
            ttl = math.ceil((limit.window_end(start) - now) * 1000)
            args += (limit.value, 2 if limit.is_money else 1 if limit.is_token else 0, ttl if ttl > 0 else 1)
        key = self._slot_key(user)
        keys = [*self._keys(user, limits, starts), key, self._record_key(user, admission_id)]
        if not admission_id:
            result = await self._run_script(self._admit, keys, args)
        else:
            try:
                result = await self._once(self._admit, keys, args)
            except StoreUnavailable as exc:
                if isinstance(exc.__cause__, LOST):
                    self._release(keys, [user, slot_id, *[0, 0] * len(limits), "r", ADMISSION_TTL_MS])
                raise
        if slot is not None:
            self._last_now = (now, time.monotonic())
            if result[0] == 1:
                self._hold(slot_id, key)
        return result[0] == 1, result[2:], result[1]

    async def settle(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int, reserved: int = 0,
        slot: str | None = None, money: tuple[int, int] = (0, 0),
    ) -> None:
        """Add ``delta`` tokens (may be negative; never below 0) to windows not yet expired,
        release the run's ``reserved`` tokens and its concurrency ``slot``; spend limits move by
        ``money = (delta, reserved)`` nano-dollars instead. Not retried."""
        await self.settle_once("", user, limits, starts, delta, reserved, slot, money)

    async def settle_once(
        self, admission_id: str, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int,
        reserved: int = 0, slot: str | None = None, money: tuple[int, int] = (0, 0),
    ) -> None:
        """:meth:`settle`, counted once per ``admission_id``: a reply lost is asked again once."""
        if slot is not None:
            self._slots.pop(slot, None)
        args: list[Any] = [user, slot or ""]
        for limit in limits:
            args += money if limit.is_money else (delta, reserved)
        args += ("s" if admission_id else "", SETTLED_TTL_MS)
        keys = [*self._keys(user, limits, starts), self._slot_key(user), self._record_key(user, admission_id)]
        if admission_id:
            await self._once(self._settle, keys, args)
        else:
            await self._run_script(self._settle, keys, args)

    async def _once(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        """One script call carrying an admission id; sent again once when its reply was lost."""
        try:
            return await self._run_script(script, keys, args)
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, LOST):
                raise
        return await self._run_script(script, keys, args)

    def _release(self, keys: list[Any], args: list[Any]) -> None:
        """Release an admission whose reply never arrived (in the background: its caller gets
        its 503 now). If Redis cannot be reached for this either, its record and counters expire."""
        async def release() -> None:
            try:
                await self._run_script(self._settle, keys, args)
            except (StoreUnavailable, ValueError):
                pass
        task = asyncio.ensure_future(release())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    def _now_ms(self) -> int:
        """The limiter's clock now (as of its last admission), in ms."""
        then, at = self._last_now
        if not then:
            return int(time.time() * 1000)
        return int((then + time.monotonic() - at) * 1000)

    def _hold(self, slot: str, key: str) -> None:
        """Keep ``slot`` alive while this process runs (a dead process's slots expire)."""
        self._slots[slot] = key
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        """Every ``SLOT_REFRESH`` seconds, push the expiry of the slots held; stop when none is."""
        while self._slots:
            await asyncio.sleep(SLOT_REFRESH)
            expiry = self._now_ms() + SLOT_TTL_MS
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for slot, key in list(self._slots.items()):
                        pipe.zadd(key, {slot: expiry}, xx=True)
                        pipe.pexpire(key, SLOT_TTL_MS)
                    await self._call(pipe.execute())
            except StoreUnavailable:
                continue  # the next beat tries again; slots expire only after SLOT_TTL_MS

    async def usage(self, user: str, limits: Sequence[Limit], starts: Sequence[int]) -> list[int]:
        """Each limit's usage by ``user`` in its current window: one pipelined round trip."""
        return (await self.user_figures(user, limits, starts, slots=False))[0]

    async def user_figures(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], *, slots: bool = True
    ) -> tuple[list[int], list[int], int]:
        """Each limit's usage by ``user`` and the part of it reserved by runs in flight; and how
        many runs ``user`` has in flight: one pipelined round trip (all in ``user``'s slot)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys(user, limits, starts):
                pipe.hmget(key, "u", "h")
            if slots:
                pipe.zcount(self._slot_key(user), f"({self._now_ms()}", "+inf")
            replies = await self._call(pipe.execute())
        figures = [[int(value or 0) for value in reply] for reply in replies[:len(limits)]]
        return [used for used, _ in figures], [held for _, held in figures], int(replies[-1]) if slots else 0

    async def window_stats(
        self, limits: Sequence[Limit], starts: Sequence[int]
    ) -> tuple[list[int], list[int], int, list[int]]:
        """Per limit: total used and users counted; users counted under any limit; and per
        limit the tokens reserved by runs in flight.

        No key holds these (every admission would write it: a hot key on one node). They are
        summed on read: a SCAN of every master for the current windows' per-user hashes, then
        one pipelined HMGET per hash found. Stats are a rare, admin-guarded read whose cost grows
        with the users active in the window; admissions stay on their user's node alone.
        """
        index = {f"{limit.name}:{start}": i for i, (limit, start) in enumerate(zip(limits, starts))}
        totals, users, held = [0] * len(limits), [0] * len(limits), [0] * len(limits)
        found: list[tuple[int, str, bytes]] = []
        skip = len(self._head) + 1
        pattern = glob_escape(self._head) + "{*}l:*"
        async def scan() -> None:
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                tag, _, window = key.decode("utf-8", "replace")[skip:].rpartition("}l:")
                if window in index:
                    found.append((index[window], tag, key))
        await self._call(scan())
        active: set[str] = set()
        for start in range(0, len(found), 1000):
            chunk = found[start:start + 1000]
            async with self._redis.pipeline(transaction=False) as pipe:
                for *_, key in chunk:
                    pipe.hmget(key, "u", "h")
                replies = await self._call(pipe.execute())
            for (i, tag, _), (used, reserved) in zip(chunk, replies):
                if used is None:
                    continue  # expired since the scan
                totals[i] += int(used)
                held[i] += int(reserved or 0)
                users[i] += 1
                active.add(tag)
        return totals, users, len(active), held

    async def ping(self) -> None:
        """One PING: raises :class:`StoreUnavailable` when Redis does not answer."""
        await self._call(self._redis.ping())

    async def delete_all(self) -> int:
        """Delete every key under this store's prefix (tests, resets); returns how many."""
        deleted = 0
        pattern = glob_escape(self._head) + "*"
        async for key in self._redis.scan_iter(match=pattern, count=500):
            deleted += await self._call(self._redis.unlink(key))
        return deleted

    async def aclose(self) -> None:
        """Send what is queued, then close the connections."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)
        await self._redis.aclose()

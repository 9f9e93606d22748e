"""What a key is: the secret shown once, and the record kept of it (its hash, never the key).

    secret, record = new_key("alice", name="laptop", limits=["5/minute"])
    print(secret)             # sk-mt-...   (shown once; only record.hash is stored)
    record.id                 # key_3f9a0c1d2e4b (public, names the key in logs and metrics)
    record.prefix             # sk-mt-Ab12 (for people to recognise their keys)
"""
from __future__ import annotations

import datetime
import hashlib
import re
import secrets
import string
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from ..extras import optional
from ..ratelimit.limits import Limit, parse_limit, parse_spend_limit

__all__ = ["KEY_PREFIX", "ApiKey", "hash_key", "looks_like_key", "new_key", "parse_duration"]

#: Every key starts with this.
KEY_PREFIX = "sk-mt-"
#: Characters of a key after its prefix (``secrets.token_urlsafe(32)``: 256 bits).
_SECRET_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
#: Longest key accepted for a lookup; anything longer is not one of ours.
MAX_KEY_LENGTH = 128
#: Characters of the key shown as its display prefix.
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 4
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _small_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before), else OpenSSL's.

    The same digest; but OpenSSL 3's ``EVP`` path reads so much memory (its provider and
    method stores) that, called once a request between everything else a request does, it
    is dear: a key's hash took 11.9 us from cold caches against 6.6 for CPython's (3.2 for a
    call that does nothing; 0.4 either way in a loop), 3-7 % of a request that carries a key
    (bench/README.md, "Issue 34, seventh round")."""
    for name in ("_sha2", "_sha256"):
        module = optional(name)
        if module is not None and hasattr(module, "sha256"):
            return module.sha256  # type: ignore[no-any-return]
    return hashlib.sha256


_sha256 = _small_sha256()


def hash_key(secret: str) -> str:
    """The SHA-256 hex digest of a key: what the stores keep and look keys up by."""
    return _sha256(secret.encode("utf-8")).hexdigest()  # type: ignore[no-any-return]


def looks_like_key(secret: str) -> bool:
    """True for a string of our key format (checked before any store is asked)."""
    return (secret.startswith(KEY_PREFIX) and len(KEY_PREFIX) < len(secret) <= MAX_KEY_LENGTH
            and _SECRET_CHARS.issuperset(secret[len(KEY_PREFIX):]))


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def _epoch(text: Any) -> float | None:
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``15m``, ``90s`` or ``3600``; ValueError for anything else."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (examples: 30d, 12h, 15m, 90s, 3600)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _limits(texts: Sequence[str], unit: str) -> tuple[Limit, ...]:
    return tuple(parse_limit(text, unit=unit) for text in texts)


@dataclass(frozen=True)
class ApiKey:
    """The stored record of a key: everything but the key itself.

    ``limits`` / ``token_limits`` / ``spend_limits`` (USD: ``"5/day"``) are in the command
    line's syntax (``"5/minute"``); when
    either is given they replace the server's default limits for this key's requests.
    Times are seconds since the epoch; ``expires_at`` None means never.
    """

    id: str
    user: str
    hash: str
    prefix: str
    created_at: float
    name: str | None = None
    expires_at: float | None = None
    revoked: bool = False
    limits: tuple[str, ...] = ()
    token_limits: tuple[str, ...] = ()
    spend_limits: tuple[str, ...] = ()
    #: The models (names as ``/v1/models`` lists them) the key may use; empty: every one.
    models: tuple[str, ...] = ()
    #: The parsed limits, in the order the limiter applies them (empty: the server's defaults).
    rate_limits: tuple[Limit, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        parsed = (_limits(self.limits, "request") + _limits(self.token_limits, "token")
                  + tuple(parse_spend_limit(text) for text in self.spend_limits))
        object.__setattr__(self, "rate_limits", parsed)

    def allows(self, model: str) -> bool:
        """True when the key may use ``model`` (a key naming no models may use every one)."""
        return not self.models or model in self.models

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at

    def usable(self, now: float | None = None) -> bool:
        """Neither revoked nor expired."""
        return not self.revoked and not self.expired(now)

    def revoke(self) -> ApiKey:
        return replace(self, revoked=True)

    def public(self) -> dict[str, Any]:
        """What anyone managing keys may see: no hash, no key."""
        return {"id": self.id, "user": self.user, "name": self.name, "prefix": self.prefix,
                "created_at": _iso(self.created_at), "expires_at": _iso(self.expires_at),
                "revoked": self.revoked, "limits": list(self.limits), "token_limits": list(self.token_limits),
                "spend_limits": list(self.spend_limits), "models": list(self.models)}

    def to_json(self) -> dict[str, Any]:
        """The stored form (the hash, never the key)."""
        return {"id": self.id, "user": self.user, "name": self.name, "hash": self.hash, "prefix": self.prefix,
                "created_at": self.created_at, "expires_at": self.expires_at, "revoked": self.revoked,
                "limits": list(self.limits), "token_limits": list(self.token_limits),
                "spend_limits": list(self.spend_limits), "models": list(self.models)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApiKey:
        return cls(id=str(data["id"]), user=str(data["user"]), hash=str(data["hash"]), prefix=str(data["prefix"]),
                   created_at=_epoch(data["created_at"]) or 0.0, name=data.get("name"),
                   expires_at=_epoch(data.get("expires_at")), revoked=bool(data.get("revoked", False)),
                   limits=tuple(data.get("limits") or ()), token_limits=tuple(data.get("token_limits") or ()),
                   spend_limits=tuple(data.get("spend_limits") or ()),
                   models=tuple(data.get("models") or ()))


def new_key(user: str, *, name: str | None = None, limits: Sequence[str] = (), token_limits: Sequence[str] = (),
            spend_limits: Sequence[str] = (), models: Sequence[str] = (),
            expires_in: float | None = None, now: float | None = None) -> tuple[str, ApiKey]:
    """A fresh key and its record; ValueError for a bad user, limit or expiry.

    ``user`` may not be blank nor enter the ``ip:`` namespace of client addresses.
    """
    if not isinstance(user, str) or not user.strip():
        raise ValueError("user must be a non-empty string")
    if user.startswith("ip:"):
        raise ValueError("user may not start with 'ip:' (that namespace is for client addresses)")
    if name is not None and not isinstance(name, str):
        raise ValueError("name must be a string")
    if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, (int, float))
                                   or not 0 < expires_in < 1e11):
        raise ValueError("expires_in must be a positive number of seconds")
    for text in (*limits, *token_limits, *spend_limits):
        if not isinstance(text, str):
            raise ValueError(f"a limit must be a string like '5/minute', not {text!r}")
    for model in models:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"a model must be a non-empty string, not {model!r}")
    created = time.time() if now is None else now
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        id="key_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12)),
        user=user, hash=hash_key(secret), prefix=secret[:DISPLAY_PREFIX_LENGTH], created_at=created, name=name,
        expires_at=None if expires_in is None else created + float(expires_in),
        limits=tuple(limits), token_limits=tuple(token_limits), spend_limits=tuple(spend_limits),  # parsed in __post_init__
        models=tuple(models),
    )
    names = [limit.name for limit in record.rate_limits]
    if len(set(names)) != len(names):
        raise ValueError(f"a key's limits must differ, got {[*limits, *token_limits, *spend_limits]}")
    return secret, record

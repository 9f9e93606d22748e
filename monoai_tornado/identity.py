"""Who is asking: the API key's user, else the user id from the body (through the validator),
else the client address.

Forwarding headers (``X-Real-IP``, else ``X-Forwarded-For``) are believed only when the peer
that sent them is one of the configured trusted proxies; anyone else could forge them to escape
their limits (the rule: :meth:`IdentityResolver.client_ip`).
"""
from __future__ import annotations

import enum
import inspect
import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Final, Iterable, Mapping, Union

from .errors import Forbidden

if TYPE_CHECKING:
    from .keys import ApiKey, KeyRing

log = logging.getLogger("monoai_tornado.identity")

ValidatorResult = Union[bool, str, None]
#: The namespace of IP identities (``ip:ADDRESS``); no user id can enter it.
IP_PREFIX = "ip:"

UserValidator = Callable[[str], Union[ValidatorResult, Awaitable[ValidatorResult]]]


class Unchecked(enum.Enum):
    """The type of :data:`UNCHECKED`."""

    UNCHECKED = "unchecked"


#: An API key not checked yet: :meth:`IdentityResolver.resolve` reads it from the headers.
#: A handler that checked it already (its 401 comes first) passes what it found instead, so
#: that a request is authenticated once.
UNCHECKED: Final = Unchecked.UNCHECKED


@dataclass(frozen=True)
class Identity:
    """The key a request is limited under (``user_id`` or ``ip:ADDRESS``) and where it came from."""

    key: str
    kind: str  # "key" (an API key's user), "user" or "ip"
    ip: str
    #: The API key the request carried, when it did.
    api_key: ApiKey | None = None


@dataclass(frozen=True)
class Validation:
    valid: bool
    normalized: str | None = None


class IdentityResolver:
    """Turns a request's API key, ``user_id`` and peer address into an :class:`Identity`.

    Precedence: a key's user, else a validated ``user_id``, else the client IP. With a key,
    the body's ``user_id`` is ignored: nobody spends another user's budget by naming it.
    """

    def __init__(
        self,
        validator: UserValidator | None = None,
        trusted_proxies: Iterable[str] = (),
        reject_invalid: bool = False,
        keys: KeyRing | None = None,
    ) -> None:
        self.keys = keys
        self.validator = validator
        self.trusted_networks = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]
        self.reject_invalid = reject_invalid

    async def validate(self, user_id: str) -> Validation:
        """Run the validator: True -> valid, a string -> valid and normalized, else invalid.

        An id in the IP namespace (``ip:...``), given or normalized to, is never a user: it
        would spend the budget of the anonymous clients at that address.
        """
        if user_id.startswith(IP_PREFIX):
            return Validation(False)
        if self.validator is None:
            return Validation(True)
        try:
            verdict: Any = self.validator(user_id)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception:
            log.exception("user_validator raised for user_id %r; treating it as invalid", user_id)
            return Validation(False)
        if isinstance(verdict, str):
            return Validation(True, verdict) if verdict and not verdict.startswith(IP_PREFIX) else Validation(False)
        return Validation(verdict is True)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_networks)

    def client_ip(self, peer: str, headers: Mapping[str, str]) -> str:
        """The client's address: the peer's, or the forwarded one when the peer is trusted.

        The rule: ``X-Real-IP`` when the trusted proxy sends one (a proxy that sets it replaces
        whatever the client sent), else the nearest untrusted hop of ``X-Forwarded-For``. So a
        proxy that sets only ``X-Real-IP`` cannot be fooled by a client's own
        ``X-Forwarded-For``; a proxy that sets only ``X-Forwarded-For`` must drop a client's
        ``X-Real-IP`` (or set it too, as README's nginx example does).
        """
        if not self.trusted_networks or not self._is_trusted(peer):
            return peer
        real_ip = (headers.get("X-Real-IP") or "").strip()
        if real_ip:
            return real_ip if _is_ip(real_ip) else peer
        forwarded = headers.get("X-Forwarded-For")
        if forwarded:
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            # Walk from the nearest hop outwards, skipping our own proxies.
            for hop in reversed(hops):
                if not _is_ip(hop):
                    return peer
                if not self._is_trusted(hop):
                    return hop
            return hops[0] if hops else peer
        return peer

    async def resolve(self, user_id: str | None, peer: str, headers: Mapping[str, str],
                      api_key: ApiKey | None | Unchecked = UNCHECKED) -> Identity:
        """The identity to limit a request under (401 for a bad or, when required, missing key);
        ``api_key``: the key the headers carry, when the caller checked it already."""
        ip = self.client_ip(peer, headers)
        if self.keys is not None:
            if api_key is UNCHECKED:
                api_key = await self.keys.from_headers(headers)
            if api_key is not None:
                return Identity(api_key.user, "key", ip, api_key)
        if user_id is not None:
            validation = await self.validate(user_id)
            if validation.valid:
                return Identity(validation.normalized or user_id, "user", ip)
            if self.reject_invalid:
                raise Forbidden("Invalid user_id")
        return Identity(IP_PREFIX + ip, "ip", ip)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

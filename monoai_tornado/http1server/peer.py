"""A connection's peer as Tornado's ``HTTPServerRequest`` reads it (``connection.context``), kept
apart from the server so that handlers may name it without httptools installed."""
from __future__ import annotations

__all__ = ["PeerContext"]


class PeerContext:
    """What Tornado's ``HTTPServerRequest`` reads of ``connection.context``; it is also where the
    connection's API key is remembered (:class:`~monoai_tornado.keys.ring.CredentialMemo`)."""

    __slots__ = ("remote_ip", "protocol", "address", "credential")

    def __init__(self, address: object) -> None:
        self.address = address
        self.remote_ip = address[0] if isinstance(address, tuple) else "0.0.0.0"
        self.protocol = "http"
        #: The connection's last credential header and its key's hash (``keys.ring.CredentialMemo``).
        self.credential: tuple[bytes, str] | None = None

    def __str__(self) -> str:
        return str(self.remote_ip)

"""``/admin/keys``: create, list and revoke API keys over HTTP, behind the admin token.

    POST   /admin/keys        {"user", "name"?, "limits"?, "token_limits"?, "spend_limits"?, "models"?, "expires_in"?} -> 201
    GET    /admin/keys        every key, without secrets
    DELETE /admin/keys/{id}   revoke -> {"id", "revoked": true}; 404 for an unknown id

Served only with a key store; answered only with ``--admin-token`` presented as
``Authorization: Bearer`` (403 otherwise, before anything else is looked at).
"""
from __future__ import annotations

from typing import Any

from ..errors import Forbidden, InvalidJson, NotFound, PayloadTooLarge
from ..keys import KeyRing, new_key
from ..prompt_request import capped_identity, load_json_object
from .base import JsonHandler


class _AdminKeysBase(JsonHandler):
    endpoint = "admin_keys"

    def prepare(self) -> None:
        if self.request.method == "OPTIONS":
            return
        if self.context.admin_token is None:
            raise Forbidden("Managing keys over HTTP needs the server started with --admin-token")
        self.require_admin()

    @property
    def ring(self) -> KeyRing:
        keys = self.context.keys
        if keys is None:
            raise NotFound("No key store is configured (--keys-file or --keys-redis)")
        return keys


def _optional_strings(body: dict[str, Any], field: str) -> list[str]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidJson(f"Field '{field}' must be a list of strings like '5/minute'")
    return value


def _optional_models(body: dict[str, Any]) -> list[str]:
    value = body.get("models")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise InvalidJson("Field 'models' must be a list of model names like ['chat', 'gpt-4o-mini']")
    return value


class AdminKeysHandler(_AdminKeysBase):
    """``POST /admin/keys`` (create) and ``GET /admin/keys`` (list)."""

    async def post(self) -> None:
        if len(self.request.body) > self.context.max_body_size:
            raise PayloadTooLarge(f"Request body is larger than {self.context.max_body_size} bytes")
        body = load_json_object(self.request.body)
        user, name, expires_in = body.get("user"), body.get("name"), body.get("expires_in")
        if not isinstance(user, str) or not user.strip():
            raise InvalidJson("Field 'user' is required and must be a non-empty string")
        capped_identity(user, "user")
        if name is not None and not isinstance(name, str):
            raise InvalidJson("Field 'name' must be a string")
        try:
            secret, record = new_key(user, name=name, limits=_optional_strings(body, "limits"),
                                     token_limits=_optional_strings(body, "token_limits"),
                                     spend_limits=_optional_strings(body, "spend_limits"),
                                     models=_optional_models(body), expires_in=expires_in)
        except ValueError as exc:
            raise InvalidJson(str(exc)) from None
        await self.ring.add(record)
        public = record.public()
        self.send_json({"id": record.id, "key": secret, "user": record.user, "name": record.name,
                        "created_at": public["created_at"], "expires_at": public["expires_at"],
                        "limits": public["limits"], "token_limits": public["token_limits"],
                        "spend_limits": public["spend_limits"], "models": public["models"], "prefix": record.prefix}, status=201)

    async def get(self) -> None:
        self.send_json({"keys": [record.public() for record in await self.ring.store.all()]})


class AdminKeyHandler(_AdminKeysBase):
    """``DELETE /admin/keys/{id}``: revoke."""

    async def delete(self, key_id: str) -> None:
        revoked = await self.ring.revoke(key_id)
        if revoked is None:
            raise NotFound(f"No API key with id {key_id!r}")
        self.send_json({"id": revoked.id, "revoked": True})

"""Endpoints about the server rather than prompts: ``/``, ``/health``, ``/agents``,
``/validate-user`` and the rate-limit statistics."""
from __future__ import annotations

from typing import Any, Sequence

from ..backends.base import Backend
from ..errors import ApiError, BadRequest, PayloadTooLarge
from ..keys import ApiKey, bearer_token
from ..ratelimit.limits import Limit
from ..prompt_request import load_json_object, user_id_of
from .base import JsonHandler


class RootHandler(JsonHandler):
    """``GET /``: the original's greeting, plus what is served."""

    endpoint = "root"

    def get(self) -> None:
        self.set_header("Vary", "Accept")
        if _prefers_html(self.request.headers.get("Accept", "")):  # a browser: the page to try it in
            self.redirect(self.request.path.rstrip("/") + "/playground")
            return
        ctx = self.context
        body: dict[str, Any] = {
            "msg": f"App {ctx.name} successfully started",
            "started_at": ctx.started_at.isoformat().replace("+00:00", "Z"),
        }
        if ctx.model is not None:
            model = ctx.model.backend.describe()
            body["model"] = model
            if model.get("provider") == "demo":
                body["notice"] = "This server runs the built-in DEMO model, not a real LLM."
        body["agents"] = sorted(ctx.agents)
        body["endpoints"] = list(ctx.endpoints)
        self.send_json(body)


def _prefers_html(accept: str) -> bool:
    """True when ``Accept`` names ``text/html`` before (or without) any JSON: a browser opening the
    page, not a client of the API (which sends ``application/json``, ``*/*`` or nothing)."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "text/html" not in kinds:
        return False
    json_at = next((i for i, kind in enumerate(kinds) if kind == "application/json"), len(kinds))
    return kinds.index("text/html") < json_at


class HealthHandler(JsonHandler):
    """``GET /health``; with a limiter, its store's state, and 503 while prompts would be refused
    (so that a load balancer sends them elsewhere)."""

    endpoint = "health"

    async def get(self) -> None:
        body: dict[str, Any] = {"status": "ok", "app": self.context.name}
        able = True
        gateway = self.context.gateway
        if gateway is not None:  # every deployment's state; details for the admin only, when there is one
            token = self.context.admin_token
            given = self.request.headers.get("Authorization", "")
            detailed = token is None or (given.startswith("Bearer ") and self.is_admin_token(given[7:]))
            body["models"], able = gateway.router.health(detailed)
        else:
            able = await self.upstream_reachable(body)
        limiter = self.context.limiter
        if limiter is not None:
            available = await limiter.check()
            body["limiter"] = "ok" if available else "unavailable"
            able = able and (available or limiter.fail_open)
        if able:
            self.send_json(body)
        else:
            self.send_json({**body, "status": "unavailable"}, status=503)

    async def upstream_reachable(self, body: dict[str, Any]) -> bool:
        """With one model behind an upstream, ``"upstream": "ok"``, or ``"unreachable"`` and the
        cause (then False: every prompt would fail, 503)."""
        model = self.context.model
        if model is None or type(model.backend).unreachable is Backend.unreachable:
            return True
        problem = await model.backend.unreachable()
        body["upstream"] = "ok" if problem is None else "unreachable"
        if problem is not None:
            body["upstream_error"] = problem
        return problem is None


class AgentsHandler(JsonHandler):
    """``GET /agents``: every agent with its tools' names and descriptions."""

    endpoint = "agents"

    async def get(self) -> None:
        await self.caller_key()
        agents = [{**agent.describe(), "name": name} for name, agent in sorted(self.context.agents.items())]
        self.send_json({"agents": agents})


class ValidateUserHandler(JsonHandler):
    """``POST /validate-user``: runs the configured validator on a ``user_id``."""

    endpoint = "validate_user"

    async def post(self) -> None:
        if len(self.request.body) > self.context.max_body_size:
            raise PayloadTooLarge(f"Request body is larger than {self.context.max_body_size} bytes")
        body = load_json_object(self.request.body)
        user_id = user_id_of(body)
        if user_id is None or not user_id.strip():
            raise BadRequest("Field 'user_id' is required", code="missing_user_id")
        validation = await self.context.pipeline.identity.validate(user_id)
        if validation.valid:
            self.send_json({"valid": True, "user_id": user_id, "normalized": validation.normalized})
        else:
            self.send_json({"valid": False, "user_id": user_id, "error": "Invalid user_id"})


class StatsHandler(JsonHandler):
    """``GET /rate-limit/stats``: the limiter's global figures."""

    endpoint = "stats"

    async def get(self) -> None:
        self.require_admin()
        limiter = self.context.limiter
        if limiter is None:
            self.send_json({"message": "Rate limiter not configured"})
            return
        stats = await limiter.stats()
        # The original's keys beside our own, for clients written for MonoAI.
        self.send_json({"rate_limiter": limiter.describe(), "global_stats": stats, **stats})


class UserStatsHandler(JsonHandler):
    """``GET /rate-limit/stats/{user_id}``: one user's usage, remaining and reset times."""

    endpoint = "user_stats"

    async def get(self, user_id: str) -> None:
        api_key = await self.own_key(user_id)
        if api_key is None:
            self.require_admin()
        limiter = self.context.limiter
        if limiter is None:
            self.send_json({"message": "Rate limiter not configured"})
            return
        limits: Sequence[Limit] | None
        if api_key is not None:
            limits = api_key.rate_limits or None
        else:
            limits = await self.limits_of_keys(user_id, limiter.limits)
        stats = await limiter.user_stats(user_id, limits)
        per_limit = {name: {"used": used, "remaining": stats["remaining"][name], "reset_in": stats["reset_in"][name]}
                     for name, used in stats["usage"].items()}
        self.send_json({**stats, "stats": per_limit})

    async def limits_of_keys(self, user_id: str, defaults: list[Limit]) -> list[Limit] | None:
        """The defaults plus the own limits of the user's usable keys (None: just the defaults)."""
        keys = self.context.keys
        if keys is None:
            return None
        limits = {limit.name: limit for limit in defaults}
        for record in await keys.store.all():
            if record.user == user_id and record.usable():
                limits.update((limit.name, limit) for limit in record.rate_limits)
        return list(limits.values()) if len(limits) > len(defaults) else None

    async def own_key(self, user_id: str) -> ApiKey | None:
        """A usable API key of ``user_id`` itself, presented as the bearer token (not the admin token)."""
        keys = self.context.keys
        token = bearer_token(self.request.headers) if keys is not None else None
        if keys is None or not token or self.is_admin_token(token):
            return None
        try:
            api_key = await keys.authenticate(token)
        except ApiError:
            return None
        return api_key if api_key.user == user_id else None


class MetricsHandler(JsonHandler):
    """``GET /metrics``: Prometheus text format (guarded by the admin token when one is set)."""

    endpoint = "metrics"

    def get(self) -> None:
        self.require_admin()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.context.pipeline.metrics.render())

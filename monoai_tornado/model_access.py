"""Which models an API key may use (API.md Part 3, "API keys"): a key naming models
(``keys create --models chat,gpt-4o-mini``, ``"models"`` on ``POST /admin/keys``) is refused
every other one with 403 ``model_not_allowed``, and ``/v1/models`` lists only its own.

Names are those ``/v1/models`` lists: a model's name (after aliases), ``agent/NAME`` for an agent.
"""
from __future__ import annotations

from .errors import ModelNotAllowed
from .keys import ApiKey
from .targets import AgentTarget, Target

__all__ = ["allowed_model", "listed_name"]

#: Prefix of the ids that name agents as models (as ``/v1/models`` lists them).
AGENT_PREFIX = "agent/"


def listed_name(target: Target) -> str:
    """The id ``/v1/models`` lists ``target`` under."""
    return AGENT_PREFIX + target.name if isinstance(target, AgentTarget) else target.name


def allowed_model(key: ApiKey, target: Target) -> None:
    """Nothing when ``key`` may use ``target``; else 403 ``model_not_allowed``."""
    name = listed_name(target)
    if not key.allows(name):
        raise ModelNotAllowed(f"This API key may not use the model '{name}'; it may use: {', '.join(key.models)}")

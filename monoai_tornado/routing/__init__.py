"""Many models, many replicas (API.md Part 3, "Models and deployments").

:class:`Gateway` holds the current :class:`Router` (the models of one configuration); each
model is a :class:`RoutedModel` target whose :class:`RoutedBackend` picks a deployment per call
(:mod:`.choice`), waits for a slot (:mod:`.slots`), and retries failures before the first event
on another deployment, then on the fallbacks (:mod:`.backend`).
"""
from __future__ import annotations

from .backend import NoDeployment, RoutedBackend
from .gateway import Gateway
from .note import DEPLOYMENT_HEADER, ROUTE_NOTE, RouteNote
from .router import Router
from .state import Deployment
from .target import RoutedModel

__all__ = ["DEPLOYMENT_HEADER", "Deployment", "Gateway", "NoDeployment", "ROUTE_NOTE", "RouteNote", "RoutedBackend",
           "RoutedModel", "Router"]

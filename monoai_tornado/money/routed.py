"""Prices of routed models: what admission reserves with, and what each deployment bills.

A routed model may be answered by any of its deployments or its fallbacks', so admission
prices it at the highest price of each kind among them (the reservation then covers whichever
answers), and settlement bills the deployment that answered at its own prices. A model with an
unpriced deployment anywhere in that chain is unpriced: under a spend limit it is refused
(``model_not_priced``) rather than letting a run escape the budget.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from .prices import Prices

if TYPE_CHECKING:
    from ..routing.router import Router

__all__ = ["chain_prices", "deployment_prices"]


def _highest(prices: Iterable[Prices | None]) -> Prices | None:
    highest: Prices | None = None
    for one in prices:
        if one is None:
            return None
        highest = one if highest is None else Prices(max(highest.input, one.input), max(highest.output, one.output),
                                                     max(highest.cached_input, one.cached_input))
    return highest


def chain_prices(router: Router, name: str) -> Prices | None:
    """The highest prices among the deployments of ``name`` and its fallbacks (None: one is unpriced)."""
    if name not in router.models:
        return None
    return _highest(deployment.prices for route in router.chain(name) for deployment in route.deployments)


def deployment_prices(router: Router, deployment_id: str) -> Prices | None:
    """The prices of the deployment ``deployment_id`` (None: unknown or unpriced)."""
    deployment = router.deployment(deployment_id)
    return None if deployment is None else deployment.prices

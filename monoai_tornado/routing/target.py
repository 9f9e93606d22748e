"""A routed model as a prompt target: the model result names the model and deployment that answered."""
from __future__ import annotations

from ..calls import RunEvents, UsageMeter
from ..conversation import ModelInfo, RunResult
from ..money.prices import Prices
from ..money.routed import chain_prices, deployment_prices
from ..targets import ModelTarget
from ..prompt_request import PromptRequest
from .backend import RoutedBackend, RouterHolder
from .note import ROUTE_NOTE, RouteNote
from .router import Router


class RoutedModel(ModelTarget):
    """The model ``name`` of a gateway; runs like any model target, on the deployment the router picks."""

    def __init__(self, holder: RouterHolder, name: str) -> None:
        super().__init__(RoutedBackend(holder, name))
        self.name = name
        self.holder = holder
        self._chain_prices: tuple[Router, Prices | None] | None = None

    @property  # read from the current router: a reload may change prices
    def prices(self) -> Prices | None:
        """What admission reserves with: the highest prices this model's chain may bill."""
        router = self.holder.router
        known = self._chain_prices
        if known is None or known[0] is not router:  # a router never changes: its prices are kept
            known = self._chain_prices = (router, chain_prices(router, self.name))
        return known[1]

    def deployment_prices(self, deployment: str) -> Prices | None:
        """What the deployment that answered bills."""
        return deployment_prices(self.holder.router, deployment)

    async def run(self, request: PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> RunResult:
        outer = ROUTE_NOTE.get()
        note = RouteNote(on_chosen=outer.on_chosen if outer is not None else None,
                         on_answer=outer.on_answer if outer is not None else None)
        token = ROUTE_NOTE.set(note)
        try:
            outcome = await self.call(request, meter=meter, events=events)
        finally:
            ROUTE_NOTE.reset(token)
            meter.deployment, meter.attempts = note.deployment, max(1, note.attempts)
            if outer is not None:
                outer.deployment, outer.model, outer.provider = note.deployment, note.model, note.provider
        if note.model is None:
            return self.result(request, outcome, self.info)
        return self.result(request, outcome, ModelInfo(note.provider or self.backend.provider, note.model),
                           note.deployment)

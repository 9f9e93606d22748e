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
        note = ROUTE_NOTE.get()  # the handler's: its callbacks name the deployment to the client
        token = None
        if note is None:  # a run outside a handler: a note of its own
            note = RouteNote()
            token = ROUTE_NOTE.set(note)
        attempts_before = note.attempts
        note.deployment = note.model = note.provider = None
        try:
            outcome = await self.call(request, meter=meter, events=events)
        finally:
            if token is not None:
                ROUTE_NOTE.reset(token)
            meter.deployment, meter.attempts = note.deployment, max(1, note.attempts - attempts_before)
        if note.model is None:
            return self.result(request, outcome, self.info)
        return self.result(request, outcome, ModelInfo(note.provider or self.backend.provider, note.model),
                           note.deployment)

"""A routed model as a prompt target: the model result names the model and deployment that answered."""
from __future__ import annotations

import dataclasses

from ..calls import RunEvents, UsageMeter
from ..conversation import ModelInfo, RunResult
from ..pipeline import ModelTarget
from ..prompt_request import PromptRequest
from .backend import RoutedBackend, RouterHolder
from .note import ROUTE_NOTE, RouteNote


class RoutedModel(ModelTarget):
    """The model ``name`` of a gateway; runs like any model target, on the deployment the router picks."""

    def __init__(self, holder: RouterHolder, name: str) -> None:
        super().__init__(RoutedBackend(holder, name))
        self.name = name

    async def run(self, request: PromptRequest, /, *, meter: UsageMeter, events: RunEvents) -> RunResult:
        outer = ROUTE_NOTE.get()
        note = RouteNote(on_chosen=outer.on_chosen if outer is not None else None)
        token = ROUTE_NOTE.set(note)
        try:
            result = await super().run(request, meter=meter, events=events)
        finally:
            ROUTE_NOTE.reset(token)
            if outer is not None:
                outer.deployment, outer.model, outer.provider = note.deployment, note.model, note.provider
        if note.model is None:
            return result
        return dataclasses.replace(result, model=ModelInfo(note.provider or self.backend.provider, note.model),
                                   deployment=note.deployment)

"""The gateway: the current :class:`Router`, the targets clients name, reload and health probes.

A reload (``SIGHUP``, or the file changed: polled every second) builds a new router from the
file; runs in flight finish on the router and deployment they started on. An invalid new file
keeps the old configuration and logs one error line.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Callable

from ..config import ConfigError, GatewayConfig, load_config
from ..errors import NotFound
from ..ratelimit import Store
from ..usage import TokenCounter
from .backend import RoutedBackend
from .probe import probe
from .router import BackendFactory, Router
from .target import RoutedModel

log = logging.getLogger("monoai_tornado.routing")

#: Seconds between two looks at the file and at deployments due for a probe.
POLL_INTERVAL = 1.0

Loader = Callable[[str], GatewayConfig]


class Gateway:
    """Models by name, from a configuration that may be reloaded."""

    def __init__(self, config: GatewayConfig, build: BackendFactory, counter: TokenCounter, *,
                 store: Store | None = None, loader: Loader = load_config) -> None:
        self.build, self.store, self.counter, self.loader = build, store, counter, loader
        self.router = Router(config, build, store)
        self._targets: dict[str, RoutedModel] = {}
        self._stamp = _stamp(config.path)
        self._watch: asyncio.Task[None] | None = None
        #: Called with the new router after each reload (the application updates what it
        #: shows, the command line the limits of the file's ``[server]``).
        self.on_reload: list[Callable[[Router], None]] = []
        self.reloads = 0

    @property
    def config(self) -> GatewayConfig:
        return self.router.config

    def target(self, name: str | None) -> RoutedModel:
        """The model a client names (None: the default), through the aliases; 404 ``model_not_found``."""
        model = self.router.resolve(name)
        if model is None:
            raise NotFound(f"The model '{name}' does not exist; GET /v1/models lists the models served",
                           code="model_not_found")
        target = self._targets.get(model)
        if target is None:
            target = self._targets[model] = RoutedModel(self, model)
        return target

    @property
    def default(self) -> RoutedModel:
        return self.target(None)

    def reload(self) -> bool:
        """Read the file again and switch to it; False (and one error line) when it is invalid."""
        path = self.config.path
        self._stamp = _stamp(path)
        try:
            config = self.loader(path)
            if not config.models:
                raise ConfigError(path, "models", "the new file has no [[models]]; a running gateway needs one")
            router = Router(config, self.build, self.store)
        except (ConfigError, ValueError, OSError) as exc:
            log.error("configuration not reloaded, keeping the previous one: %s", exc)
            return False
        self.router = router
        self._targets = {name: target for name, target in self._targets.items() if name in router.models}
        for name, target in self._targets.items():
            target.backend = RoutedBackend(self, name)
        self.reloads += 1
        log.info("configuration reloaded from %s: models %s", path, ", ".join(router.models))
        for listener in self.on_reload:
            try:
                listener(router)
            except Exception as exc:  # one listener's problem does not undo the reload
                log.error("after the reload of %s: %s", path, exc)
        return True

    def start(self) -> None:
        """Reload on SIGHUP and on file changes, and probe cooled-down deployments (in this loop)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no SIGHUP
            log.debug("no SIGHUP handler in this thread")
        self._watch = asyncio.ensure_future(self._watch_loop())

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                if _stamp(self.config.path) != self._stamp:
                    self.reload()
                await self.probe_due()
                for route in self.router.models.values():  # a 429's cooldown ended: waiting calls may go
                    route.pump()
            except Exception:  # never let the watcher die
                log.exception("configuration watch failed")

    async def probe_due(self) -> None:
        """Probe every deployment cooled down by a failure whose probe is due; rejoin the ones that answer."""
        router = self.router
        now = time.monotonic()
        due = [d for d in router.deployments if d.cooled_by_failure and not d.disabled and now >= d.next_probe]
        if not due:
            return
        results = await asyncio.gather(*(probe(d) for d in due))
        for deployment, ok in zip(due, results):
            if ok:
                deployment.rejoin()
                log.info("deployment %s answered its probe: back in rotation", deployment.id)
                route = router.models.get(deployment.name)
                if route is not None:
                    route.pump()
            else:
                deployment.next_probe = time.monotonic() + max(router.cooldown, POLL_INTERVAL)


def _stamp(path: str) -> tuple[float, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime, info.st_size)
